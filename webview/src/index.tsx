/**
 * Webview entry. The HTML shell provides `<div id="root" data-view="overview|outliers|emergent|errors|compare">`
 * (data-view optional: the first view when no state was saved), links index.css, and loads this script
 * with the CSP nonce. Data arrives with the first `webview/dataset` notification after the ready handshake.
 */
import { createRoot } from 'react-dom/client';
import { isViewName } from '../../src/protocol/webview';
import { App } from './App';
import './styles.css';

const root = document.getElementById('root');
if (root === null) throw new Error('Quant Lens webview: the page has no #root element');
const requested = root.dataset.view ?? new URLSearchParams(window.location.search).get('view');
createRoot(root).render(<App initialView={isViewName(requested) ? requested : null} />);

import * as vscode from 'vscode';
import type { JobQueue } from './jobQueue';

/** A status-bar item that is visible only while jobs are queued or running; clicking it shows the log. */
export function createJobStatusBar(jobs: JobQueue): vscode.Disposable {
  const item = vscode.window.createStatusBarItem('quantlens.jobs', vscode.StatusBarAlignment.Left, 10);
  item.name = 'Quant Lens jobs';
  item.command = 'quantlens.showLog';
  const update = (): void => {
    const active = jobs.active();
    if (active.length === 0) {
      item.hide();
      return;
    }
    const running = active.find((j) => j.state === 'running');
    const queued = active.length - (running ? 1 : 0);
    const percent = running?.progress?.fraction !== undefined ? ` ${Math.round(running.progress.fraction * 100)}%` : '';
    item.text = `$(sync~spin) Quant Lens${percent}${queued > 0 ? ` (+${queued} queued)` : ''}`;
    item.tooltip = active.map((j) => `${j.state}: ${j.label}${j.progress ? ` — ${j.progress.message}` : ''}`).join('\n');
    item.show();
  };
  const subscription = jobs.onDidChange(update);
  update();
  return new vscode.Disposable(() => {
    subscription.dispose();
    item.dispose();
  });
}

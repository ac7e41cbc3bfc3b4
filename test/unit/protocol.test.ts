import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  RpcEndpoint,
  createChannelPair,
  defineNotification,
  defineRequest,
  isFiniteNumber,
  isShape,
  isString,
  isWireMessage,
  type MessageChannelLike,
} from '../../src/protocol/rpc';
import { isJobProgress, isJobResult, isJobSpec, isStartJobParams, StartJobRequest } from '../../src/protocol/jobs';
import { InvalidArgumentError } from '../../src/core/errors';

const Add = defineRequest('test.add', isShape<{ a: number; b: number }>({ a: isFiniteNumber, b: isFiniteNumber }), isFiniteNumber);
const Echo = defineRequest('test.echo', isString, isString);
const Tick = defineNotification('test.tick', isFiniteNumber);

function connected(): [RpcEndpoint, RpcEndpoint] {
  const [a, b] = createChannelPair();
  return [new RpcEndpoint(a), new RpcEndpoint(b)];
}

test('a request declared once gets its typed reply; ready handshake resolves on the caller', async () => {
  const [host, worker] = connected();
  worker.handle(Add, ({ a, b }) => a + b);
  const ready = host.whenReady();
  worker.ready();
  await ready;
  assert.equal(await host.request(Add, { a: 2, b: 40 }), 42);
});

test('a handler that throws still settles the caller with its error code and message', async () => {
  const [host, worker] = connected();
  worker.handle(Echo, () => {
    throw new InvalidArgumentError('nope: bad input');
  });
  const r = await host.requestResult(Echo, 'x');
  assert.deepEqual(r, { ok: false, error: { code: 'INVALID_ARGUMENT', message: 'nope: bad input' } });
  await assert.rejects(host.request(Echo, 'x'), (e: Error & { code?: string }) => e.code === 'INVALID_ARGUMENT');
});

test('malformed params, unknown methods and malformed replies end as errors, not hangs', async () => {
  const [host, worker] = connected();
  worker.handle(Add, ({ a, b }) => a + b);
  // Params that do not pass the guard (sent as unknown by a misbehaving peer).
  const bad = await host.requestResult(defineRequest('test.add', (_v: unknown): _v is unknown => true, isFiniteNumber), { a: 'two' });
  assert.equal(bad.ok, false);
  assert.equal(!bad.ok && bad.error.code, 'INVALID_ARGUMENT');
  const unknown = await host.requestResult(defineRequest('test.missing', isString, isString), 'x');
  assert.equal(!unknown.ok && unknown.error.code, 'UNKNOWN_METHOD');
  worker.handle(Echo, () => 'ok');
  const wrongReply = await host.requestResult(defineRequest('test.echo', isString, isFiniteNumber), 'x');
  assert.equal(!wrongReply.ok && wrongReply.error.code, 'INVALID_RESPONSE');
});

test('dispose settles every pending request with DISPOSED', async () => {
  const [a] = createChannelPair();
  const silent: MessageChannelLike = { post: () => undefined, listen: a.listen };
  const host = new RpcEndpoint(silent);
  const pending = host.requestResult(Echo, 'never answered');
  host.dispose('the worker died');
  assert.deepEqual(await pending, { ok: false, error: { code: 'DISPOSED', message: 'the worker died' } });
  assert.equal((await host.requestResult(Echo, 'after')).ok, false);
});

test('notifications are validated; invalid wire messages are dropped and counted', async () => {
  const [a, b] = createChannelPair();
  const host = new RpcEndpoint(a);
  const got: number[] = [];
  host.onNotification(Tick, (n) => got.push(n));
  b.post({ kind: 'notify', method: 'test.tick', params: 3 });
  b.post({ kind: 'notify', method: 'test.tick', params: 'three' });
  (b.post as (m: unknown) => void)({ kind: 'bogus' });
  (b.post as (m: unknown) => void)(null);
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(got, [3]);
  assert.equal(host.invalidMessages, 3);
  assert.equal(isWireMessage({ kind: 'response', id: 1, result: { ok: true, value: 1 } }), true);
  assert.equal(isWireMessage({ kind: 'response', id: -1, result: { ok: true, value: 1 } }), false);
  assert.equal(isWireMessage({ kind: 'response', id: 1, result: { ok: false } }), false);
});

test('job guards accept well-formed messages and reject malformed ones', () => {
  const spec = { kind: 'stats', modelPath: '/m', device: 'auto', histogramBins: 64, logOctaves: 24, outlierSigma: 6, topChannels: 8 };
  assert.equal(isJobSpec(spec), true);
  assert.equal(isJobSpec({ ...spec, device: 'tpu' }), false);
  assert.equal(isJobSpec({ ...spec, histogramBins: -1 }), false);
  assert.equal(isJobSpec({ ...spec, tensorNames: ['a', 2] }), false);
  assert.equal(isJobSpec({ ...spec, testFaults: { loseGpuAtTensor: 'x' } }), false);
  assert.equal(isJobSpec({ kind: 'quantizeTensors', modelPath: 'a', outputPath: 'b', ggmlType: 'Q8_0', device: 'cpu' }), true);
  assert.equal(isJobSpec({ kind: 'quantizeTensors', modelPath: 'a', outputPath: 'b', ggmlType: 'Q9_9', device: 'cpu' }), false);
  assert.equal(isStartJobParams({ jobId: 1, spec }), true);
  assert.equal(StartJobRequest.isParams({ jobId: 1.5, spec }), false);
  const progress = { jobId: 1, phase: 'read', tensorIndex: 0, tensorCount: 3, tensorName: 'w', bytesDone: 10, bytesTotal: 30, bytesPerSecond: 5, etaSeconds: null };
  assert.equal(isJobProgress(progress), true);
  assert.equal(isJobProgress({ ...progress, phase: 'sleeping' }), false);
  assert.equal(isJobProgress({ ...progress, etaSeconds: Number.NaN }), false);
  assert.equal(isJobResult({ kind: 'diagnostic' }), true);
  assert.equal(isJobResult({ kind: 'stats', modelPath: 'm', device: 'gpu', deviceDescription: 'x', tensors: [{ name: 'bad' }], seconds: 1 }), false);
});

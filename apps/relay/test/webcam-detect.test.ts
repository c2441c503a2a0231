import { describe, expect, it } from 'vitest';
import { webcamTarget } from '../src/webcam/detect.js';

const camera = { name: 'webcam' };
const ui = { name: 'ui', profile: 'octoprint' as const };

describe('webcamTarget', () => {
  it.each([
    // [service, target, kind, upstream]
    [camera, '/?action=stream', 'stream', '/?action=stream'],
    [ui, '/webcam/?action=stream', 'stream', '/webcam/?action=stream'],
    [camera, '/?action=snapshot', 'snapshot', '/?action=snapshot'],
    [camera, '/stream', 'stream', '/stream'],
    [camera, '/cam1/stream', 'stream', '/cam1/stream'],
    [camera, '/snapshot', 'snapshot', '/snapshot'],
    [camera, '/video.mjpg', 'maybe', '/video.mjpg'],
    [camera, '/', 'maybe', '/'],
  ] as const)('%o %s is a %s of %s', (service, target, kind, upstream) => {
    expect(webcamTarget(service, 'dev1', target)).toMatchObject({ kind, upstream });
  });

  it('leaves everything else to the plain proxy', () => {
    expect(webcamTarget(ui, 'dev1', '/api/job')).toBeUndefined();
    expect(webcamTarget(ui, 'dev1', '/stream')).toBeUndefined(); // not a camera service
    expect(webcamTarget({ name: 'api', profile: 'moonraker' }, 'dev1', '/server/info')).toBeUndefined();
  });

  it('one picture, one key: fps and cache busters do not split viewers', () => {
    const a = webcamTarget(ui, 'dev1', '/webcam/?action=stream')!;
    const b = webcamTarget(ui, 'dev1', '/webcam/?action=stream&1712345678901')!; // OctoPrint
    const c = webcamTarget(ui, 'dev1', '/webcam/?action=stream&fps=2&_=17&t=3&cacheBust=99')!;
    expect(b.key).toBe(a.key);
    expect(c.key).toBe(a.key);
    expect(c.upstream).toBe('/webcam/?action=stream');
    expect(c.fps).toBe(2);
    expect(a.fps).toBeUndefined();
  });

  it('different cameras, devices or services never share', () => {
    const base = webcamTarget(camera, 'dev1', '/?action=stream')!.key;
    expect(webcamTarget(camera, 'dev2', '/?action=stream')!.key).not.toBe(base);
    expect(webcamTarget({ name: 'camera' }, 'dev1', '/?action=stream')!.key).not.toBe(base);
    expect(webcamTarget(camera, 'dev1', '/?action=stream&cam=2')!.key).not.toBe(base);
    expect(webcamTarget(camera, 'dev1', '/stream')!.key).not.toBe(base);
  });

  it('a snapshot knows the stream it can be cut from', () => {
    expect(webcamTarget(camera, 'd', '/?action=snapshot&x=1')!.streamKey).toBe(webcamTarget(camera, 'd', '/?action=stream&x=1')!.key);
    expect(webcamTarget(camera, 'd', '/snapshot')!.streamKey).toBe(webcamTarget(camera, 'd', '/stream')!.key);
  });

  it('fps must be a positive number (capped at 120)', () => {
    expect(webcamTarget(camera, 'd', '/?action=stream&fps=0')!.fps).toBeUndefined();
    expect(webcamTarget(camera, 'd', '/?action=stream&fps=abc')!.fps).toBeUndefined();
    expect(webcamTarget(camera, 'd', '/?action=stream&fps=0.5')!.fps).toBe(0.5);
    expect(webcamTarget(camera, 'd', '/?action=stream&fps=1000')!.fps).toBe(120);
  });

  it('a service that sees the client credential shares only among equal credentials', () => {
    const a = webcamTarget(camera, 'd', '/?action=stream', 'Digest a')!.key;
    expect(webcamTarget(camera, 'd', '/?action=stream', 'Digest a')!.key).toBe(a);
    expect(webcamTarget(camera, 'd', '/?action=stream', 'Digest b')!.key).not.toBe(a);
    expect(webcamTarget(camera, 'd', '/?action=stream')!.key).not.toBe(a);
  });
});

import { h } from './dom.js';

/** How the picture is turned, per printer, remembered on this phone (cameras are often mounted upside down). */
export interface Orientation {
  rotate: 0 | 90 | 180 | 270;
  flipH: boolean;
  flipV: boolean;
}

const KEY = (id: string) => `porthole.webcam.${id}`;

export function loadOrientation(id: string): Orientation {
  try {
    const v = JSON.parse(localStorage.getItem(KEY(id)) ?? 'null') as Partial<Orientation> | null;
    const r = v?.rotate;
    return { rotate: r === 90 || r === 180 || r === 270 ? r : 0, flipH: v?.flipH === true, flipV: v?.flipV === true };
  } catch {
    return { rotate: 0, flipH: false, flipV: false };
  }
}

function saveOrientation(id: string, o: Orientation): void {
  try {
    localStorage.setItem(KEY(id), JSON.stringify(o));
  } catch {
    /* private mode: not remembered */
  }
}

/**
 * The full webcam: an MJPEG stream from the relay (one pull from the printer shared by every
 * viewer), pinch or double-tap to zoom, drag to pan, rotate and flip as set, full screen.
 */
export function webcamViewer(deviceId: string, name: string, signal: AbortSignal, fps = 10): HTMLElement {
  const o = loadOrientation(deviceId);
  const img = h('img', { class: 'stream', alt: `Live webcam of ${name}`, width: 640, height: 480 });
  const status = h('p', { class: 'cam-status', role: 'status' }, 'Connecting to the camera…');
  const stage = h('div', { class: 'cam-stage' }, img);
  let scale = 1;
  let tx = 0;
  let ty = 0;
  const apply = () => {
    const flip = `scale(${o.flipH ? -1 : 1}, ${o.flipV ? -1 : 1})`;
    img.style.transform = `translate(${tx}px, ${ty}px) scale(${scale}) rotate(${o.rotate}deg) ${flip}`;
  };
  const start = () => {
    img.src = `/api/devices/${encodeURIComponent(deviceId)}/webcam?fps=${fps}&t=${Date.now()}`;
  };
  img.addEventListener('load', () => {
    status.textContent = '';
  });
  let retry: ReturnType<typeof setTimeout> | undefined;
  img.addEventListener('error', () => {
    if (signal.aborted) return;
    status.textContent = 'No picture: the printer or its camera is offline. Retrying…';
    clearTimeout(retry);
    retry = setTimeout(start, 5_000);
  });
  signal.addEventListener('abort', () => {
    clearTimeout(retry);
    // Ends the stream: the relay stops sending, and pulls no longer for us.
    img.removeAttribute('src');
    img.src = 'data:,';
  });

  // Pinch to zoom and drag to pan, with pointer events (two fingers: zoom; one, when zoomed: pan).
  const pointers = new Map<number, { x: number; y: number }>();
  let pinch: { d: number; scale: number } | undefined;
  stage.addEventListener('pointerdown', (e) => {
    pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
    stage.setPointerCapture(e.pointerId);
    if (pointers.size === 2) {
      const [a, b] = [...pointers.values()];
      pinch = { d: Math.hypot(a!.x - b!.x, a!.y - b!.y), scale };
    }
  });
  stage.addEventListener('pointermove', (e) => {
    const prev = pointers.get(e.pointerId);
    if (!prev) return;
    pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
    if (pointers.size === 2 && pinch) {
      const [a, b] = [...pointers.values()];
      scale = Math.min(6, Math.max(1, (pinch.scale * Math.hypot(a!.x - b!.x, a!.y - b!.y)) / Math.max(1, pinch.d)));
    } else if (pointers.size === 1 && scale > 1) {
      tx += e.clientX - prev.x;
      ty += e.clientY - prev.y;
    }
    if (scale === 1) tx = ty = 0;
    apply();
  });
  const up = (e: PointerEvent) => {
    pointers.delete(e.pointerId);
    if (pointers.size < 2) pinch = undefined;
  };
  stage.addEventListener('pointerup', up);
  stage.addEventListener('pointercancel', up);
  stage.addEventListener('dblclick', () => {
    scale = scale > 1 ? 1 : 2.5;
    tx = ty = 0;
    apply();
  });

  const wrap = h('div', { class: 'cam' }, stage, status);
  const btn = (label: string, text: string, fn: () => void) => h('button', { type: 'button', class: 'secondary', 'aria-label': label, onclick: fn }, text);
  const controls = h(
    'div',
    { class: 'cam-controls', role: 'group', 'aria-label': 'Webcam view' },
    btn('Full screen', 'Full screen', () => {
      if (document.fullscreenElement) void document.exitFullscreen();
      else void wrap.requestFullscreen?.().catch(() => wrap.classList.toggle('pseudo-full'));
    }),
    btn('Rotate a quarter turn', 'Rotate', () => {
      o.rotate = ((o.rotate + 90) % 360) as Orientation['rotate'];
      saveOrientation(deviceId, o);
      apply();
    }),
    btn('Mirror left to right', 'Mirror', () => {
      o.flipH = !o.flipH;
      saveOrientation(deviceId, o);
      apply();
    }),
    btn('Flip upside down', 'Flip', () => {
      o.flipV = !o.flipV;
      saveOrientation(deviceId, o);
      apply();
    }),
    btn('Reset zoom', 'Reset zoom', () => {
      scale = 1;
      tx = ty = 0;
      apply();
    }),
  );
  apply();
  start();
  return h('section', { class: 'webcam', 'aria-label': 'Webcam' }, wrap, controls);
}

// A short chime made with the Web Audio API (no sound file): the speaker test of the device check
// and the call that tells a waiting patient the doctor has admitted them.

/** Play `notes` (Hz), one after another, on the speaker `sinkId` (where the browser can choose);
 * resolves when they have played. */
export async function playChime({ notes = [784, 1047, 1319], sinkId = null, volume = 0.35 } = {}) {
  const context = new AudioContext();
  try {
    if (sinkId && typeof context.setSinkId === "function") {
      await context.setSinkId(sinkId).catch((err) => console.info("[chime] speaker not set:", err?.name));
    }
    if (context.state === "suspended") await context.resume().catch(() => {});
    const step = 0.28;
    const start = context.currentTime + 0.05;
    notes.forEach((frequency, i) => {
      const at = start + i * step;
      const oscillator = context.createOscillator();
      const gain = context.createGain();
      oscillator.type = "sine";
      oscillator.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(volume, at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + step);
      oscillator.connect(gain).connect(context.destination);
      oscillator.start(at);
      oscillator.stop(at + step + 0.02);
    });
    await new Promise((resolve) => setTimeout(resolve, (notes.length * step + 0.15) * 1000));
    return context.state;
  } finally {
    context.close().catch(() => {});
  }
}

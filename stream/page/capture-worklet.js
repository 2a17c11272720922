// AudioWorklet processor: hands every render quantum (128 frames) to the page as mono float32.
// Runs at the AudioContext's rate, which the page sets to the microphone's own rate.
class CaptureProcessor extends AudioWorkletProcessor {
  process(inputs) {
    const input = inputs[0];
    if (input && input.length > 0) {
      const n = input[0].length;
      const mono = new Float32Array(n);
      for (const channel of input) {
        for (let i = 0; i < n; i++) mono[i] += channel[i] / input.length;
      }
      this.port.postMessage(mono, [mono.buffer]);
    }
    return true;
  }
}

registerProcessor("llmcodec-capture", CaptureProcessor);

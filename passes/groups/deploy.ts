/**
 * Presets that span several areas. `deploy` is the main job: the lossless cleanup (`default`), the
 * fusions that need a newer opset (`fuse`), then static INT8 (latency-aware where the quantizer supports
 * it). It needs calibration data in the pass context (`data.calibration` in a pipeline file).
 */
import type { Pass } from '../pass.js';
import { registerPreset } from '../presets.js';

registerPreset('deploy', 'default + fuse + static INT8 calibrated on data.calibration: the model to ship.', '@default,@fuse,quantize-static<latencyAware=on>');

/** This group adds presets only. */
export const deployPasses: Pass<any>[] = [];

/** One input sample of a data source: the feed for each model input, its id, and an optional label. */
import type { Feed } from '../core/host-tensor.js';

export interface Sample {
  /** File name (or index) of the sample, for messages and reports. */
  id: string;
  feed: Feed;
  label?: unknown;
}

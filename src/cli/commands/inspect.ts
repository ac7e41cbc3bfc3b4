import { UnsupportedError } from '../../core/errors';
import type { CliCommand } from '../cliTypes';

// Placeholder until the readers land (replaced by the formats work).
export const command: CliCommand = {
  async run() {
    throw new UnsupportedError('inspect is not available in this build yet');
  },
};

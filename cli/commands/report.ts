import type { CommandModule } from 'yargs';
import { inputError } from '../../core/errors.js';
import { readReport } from '../../report/files.js';
import { writeFileAtomic } from '../../core/files.js';
import { renderHtml } from '../../report/html.js';
import { renderMarkdown } from '../../report/markdown.js';

interface Args {
  file: string;
  format: string;
  output?: string;
}

export const reportCommand: CommandModule<object, Args> = {
  command: 'report <file>',
  describe: 'Render a JSON report (schema onnxforge.report/1) as Markdown or a self-contained HTML page with charts',
  builder: (y) =>
    y
      .positional('file', { type: 'string', demandOption: true, describe: 'report JSON written by --report' })
      .option('format', { type: 'string', default: 'md', describe: 'md or html' })
      .option('output', { alias: 'o', type: 'string', describe: 'write here instead of standard output' }) as never,
  handler: async (args) => {
    if (args.format !== 'md' && args.format !== 'html') throw inputError('USAGE_BAD_VALUE', `--format must be md or html, got "${args.format}"`, { field: 'format' });
    const doc = readReport(args.file);
    const text = args.format === 'html' ? renderHtml(doc) : renderMarkdown(doc);
    if (args.output) {
      writeFileAtomic(args.output, text);
      process.stdout.write(`wrote ${args.output}\n`);
    } else process.stdout.write(text);
  },
};

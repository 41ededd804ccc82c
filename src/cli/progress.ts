// A progress bar on stderr for work that takes more than a second, drawn only when stderr is a
// terminal (cli-progress); in logs and pipes nothing is drawn.

import cliProgress from "cli-progress";

export interface Progress {
  update(done: number, total: number, label: string): void;
  stop(): void;
}

/** Shows the bar only if the work is still running after `delayMs` of wall time. */
const SHOW_AFTER_MS = 1000;

export function createProgress(title: string): Progress {
  if (process.stderr.isTTY !== true) return { update: () => {}, stop: () => {} };
  const started = performance.now();
  let bar: cliProgress.SingleBar | undefined;
  return {
    update(done, total, label) {
      if (bar === undefined) {
        if (performance.now() - started < SHOW_AFTER_MS) return;
        bar = new cliProgress.SingleBar(
          {
            format: `${title} [{bar}] {value}/{total} {label}`,
            stream: process.stderr,
            clearOnComplete: true,
            hideCursor: true,
          },
          cliProgress.Presets.shades_classic,
        );
        bar.start(total, done, { label });
      }
      bar.setTotal(total);
      bar.update(done, { label });
    },
    stop() {
      bar?.stop();
    },
  };
}

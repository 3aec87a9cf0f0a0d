"""Run every benchmark in turn (`make bench`), printing each one's tables.

Each benchmark runs socketkit and its alternatives side by side and prints ratios; the
ones whose alternatives are missing (ngircd, sshd, rsync, nc, pyftpdlib) say so and
measure what they can. The whole run takes about half an hour on 2 cores.

    python bench/run_all.py [NAME...]     # names: server echo exec files chat probe
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["server", "echo", "exec", "files", "chat", "probe"]


def main() -> int:
    names = sys.argv[1:] or ORDER
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {' '.join(ORDER)}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        print(f"\n==================== bench_{name}.py ====================\n", flush=True)
        if subprocess.run([sys.executable, str(HERE / f"bench_{name}.py")], check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {' '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

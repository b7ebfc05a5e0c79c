import signal
import sys
import time

import click
from acme_core import Totals


@click.command()
@click.option("--every", default=2.0, help="Seconds between reports.")
@click.option("--rounds", default=0, help="Stop after this many reports (0: never).")
def main(every: float, rounds: int) -> None:
    """Report the running totals until stopped (SIGTERM ends it cleanly)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    totals = Totals()
    done = 0
    while not rounds or done < rounds:
        totals = totals.add(done + 1)
        click.echo(f"report {done + 1}: {totals.describe()}", err=False)
        sys.stdout.flush()
        done += 1
        if not rounds or done < rounds:
            time.sleep(every)

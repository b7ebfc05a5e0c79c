from acme_reporter.main import main
from click.testing import CliRunner


def test_two_rounds_report_the_running_totals():
    result = CliRunner().invoke(main, ["--every", "0", "--rounds", "2"])
    assert result.exit_code == 0
    assert result.output.splitlines() == ["report 1: 1 item(s), total 1", "report 2: 2 item(s), total 3"]

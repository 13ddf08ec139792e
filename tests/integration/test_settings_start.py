"""``andromede serve`` with a misspelt setting: a file key stops it, a variable is named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.server import free_port, running_server


def test_misspelt_key_in_the_settings_file_stops_the_start(tmp_path: Path) -> None:
    config = tmp_path / "andromede.toml"
    config.write_text('[andromede]\nadress = "0.0.0.0:9000"\nregion = "eu-west-3"\n')
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANDROMEDE_", "AWS_"))}
    env["ANDROMEDE_REGOIN"] = "eu-west-3"
    serve = [sys.executable, "-m", "andromede", "serve", "--config", str(config)]
    result = subprocess.run(
        [*serve, "--data-dir", str(data), "--address", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"settings file {config}: unknown setting 'adress' (did you mean address?)" in (
        result.stderr.replace("\n", "")
    )
    assert "unknown environment variable ANDROMEDE_REGOIN is ignored" in result.stderr
    assert "Traceback" not in result.stderr
    assert not data.exists()


def test_unknown_variable_is_named_once_and_the_server_runs(tmp_path: Path) -> None:
    config = tmp_path / "andromede.toml"
    config.write_text('[andromede]\nregion = "eu-west-3"\n')
    with running_server(
        tmp_path / "data",
        workers=2,
        ANDROMEDE_CONFIG_FILE=str(config),
        ANDROMEDE_GARBAGE_GRACE_SECOND="1",
    ) as server:
        s3 = server.client()
        s3.create_bucket(Bucket="settings-check")
        s3.put_object(Bucket="settings-check", Key="k", Body=b"still serving")
        assert s3.get_object(Bucket="settings-check", Key="k")["Body"].read() == b"still serving"
        log = server.log()
    warning = (
        "unknown environment variable ANDROMEDE_GARBAGE_GRACE_SECOND is ignored "
        "(did you mean ANDROMEDE_GARBAGE_GRACE_SECONDS?)"
    )
    # Once: serve checks before it starts the workers, which inherit the same environment.
    assert log.count(warning) == 1, log

"""Store credentials stay out of a run's parameters: secret-looking options are refused, naming
the keys and the safe ways, never echoing the values (the end-to-end run on S3 is in test_s3.py)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from featurestore.credentials import refuse_secrets, secret_keys
from flows.cli import app
from flows.credentials import store_options


def test_secret_looking_options_are_found_at_any_depth_and_public_ones_pass():
    options = {
        "endpoint_url": "http://127.0.0.1:9000",
        "anon": False,
        "key": "AKIA-x",
        "client_kwargs": {"region_name": "eu", "aws_session_token": "t"},
        "account_key": "k",
        "sas_token": "s",
        "config_kwargs": {"signature_version": "s3v4"},
    }
    assert secret_keys(options) == ["key", "client_kwargs.aws_session_token", "account_key", "sas_token"]
    assert secret_keys({"endpoint_url": "x", "auto_mkdir": True, "client_kwargs": {"region_name": "eu"}}) == []
    with pytest.raises(ValueError) as err:
        refuse_secrets({"secret": "hunter2", "password": "pw"})
    assert "secret, password" in str(err.value) and "--storage-secret" in str(err.value)
    assert "hunter2" not in str(err.value) and "pw" not in str(err.value).replace("password", "")
    assert store_options({"endpoint_url": "x"}) == {"endpoint_url": "x"}  # no block: the public options


def test_every_command_refuses_a_credential_given_as_a_storage_option_without_echoing_it(tmp_path):
    for command in (["ls"], ["results"], ["extract", "--dataset", "csv=x", "--encoder", "efficientnet-lite0"]):
        out = CliRunner().invoke(
            app, [*command, "--store", str(tmp_path / "s"), "--storage-option", "secret=s3cr3t-value"]
        )
        assert out.exit_code != 0, command
        assert "look like credentials" in out.output and "--storage-secret" in out.output, out.output
        assert "s3cr3t-value" not in out.output
    assert not (tmp_path / "s").exists()  # refused before anything opened the store

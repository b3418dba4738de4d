"""A boot that cannot be trusted stops before anything starts, says why, and leaves the bucket alone."""

from __future__ import annotations

import shutil
import signal

import pyrage

from tests.entrypoint.conftest import NOISE_KEY, appliance_env, bucket_objects, free_port


def make_replica(appliances, root, endpoint, bucket, age_key, standin_bin) -> dict[str, str]:
    env = appliance_env(root, endpoint, bucket, age_key, path_first=standin_bin)
    a = appliances(env)
    a.wait_healthy()
    assert a.stop() == 0
    return env


def assert_nothing_started(output: str) -> None:
    assert "supervisord started" not in output
    assert "spawned:" not in output
    assert "boot stopped" in output


def test_wrong_age_key_stops_the_boot_and_leaves_the_bucket_untouched(
        appliances, root, moto_endpoint, bucket, s3, age_key, standin_bin):
    env = make_replica(appliances, root, moto_endpoint, bucket, age_key, standin_bin)
    before = bucket_objects(s3, bucket)
    other_key = str(pyrage.x25519.Identity.generate())
    shutil.rmtree(root / "var/lib/headscale")  # as after a Fly restart
    a = appliances({**env, "AGE_SECRET_KEY": other_key})
    assert a.wait(timeout=30) == 1
    out = a.output
    assert "AGE_SECRET_KEY cannot decrypt the replica in the bucket (wrong key?)" in out
    assert_nothing_started(out)
    assert other_key not in out and age_key not in out
    assert bucket_objects(s3, bucket) == before
    assert not list((root / "var/lib/headscale").glob("db.sqlite*"))


def test_unreachable_s3_is_retried_then_stops_the_boot(appliances, root, moto_endpoint, bucket, s3, age_key,
                                                       standin_bin):
    env = make_replica(appliances, root, moto_endpoint, bucket, age_key, standin_bin)
    before = bucket_objects(s3, bucket)
    shutil.rmtree(root / "var/lib/headscale")
    dead = f"http://127.0.0.1:{free_port()}"
    a = appliances({**env, "AWS_ENDPOINT_URL_S3": dead})
    assert a.wait(timeout=60) == 1
    out = a.output
    assert "restore attempt 1/2 failed" in out and "retrying in 1s" in out
    assert "restore failed after 2 attempts" in out
    assert "the server is not started on an empty database" in out
    assert_nothing_started(out)
    assert bucket_objects(s3, bucket) == before


def test_sigterm_during_the_restore_retries_stops_the_boot_at_once(appliances, root, moto_endpoint, bucket,
                                                                   age_key, standin_bin):
    dead = f"http://127.0.0.1:{free_port()}"
    env = appliance_env(root, moto_endpoint, bucket, age_key, path_first=standin_bin,
                        AWS_ENDPOINT_URL_S3=dead, LITESTREAM_RESTORE_ATTEMPTS="5")
    a = appliances(env)
    a.wait_for("retrying in 1s")
    assert a.stop(signal.SIGTERM, timeout=10) == 128 + signal.SIGTERM
    assert "received SIGTERM during the boot steps: stopping before anything was started" in a.output
    assert "supervisord started" not in a.output


def test_missing_and_malformed_secrets_are_all_reported_at_once(appliances, root, moto_endpoint, bucket, s3,
                                                                standin_bin):
    env = appliance_env(root, moto_endpoint, bucket, "", path_first=standin_bin,
                        NOISE_PRIVATE_KEY="privkey:not-hex-secret-value",
                        LITESTREAM_SYNC_INTERVAL="soon",
                        HEADSCALE_PREFIXES_V4="100.64.0.0/33")
    for name in ("AGE_SECRET_KEY", "AWS_SECRET_ACCESS_KEY"):
        env.pop(name)
    a = appliances(env)
    assert a.wait(timeout=30) == 1
    out = a.output
    problems = [line for line in out.splitlines() if " ERROR entrypoint: " in line]
    text = "\n".join(problems)
    assert "NOISE_PRIVATE_KEY must be privkey:<64 lowercase hex digits>" in text
    assert "AGE_SECRET_KEY is required (with Litestream)" in text
    assert "AWS_SECRET_ACCESS_KEY is required (with Litestream or import)" in text
    assert "LITESTREAM_SYNC_INTERVAL must be a duration" in text
    assert "HEADSCALE_PREFIXES_V4 must be an IPv4 prefix" in text
    assert "boot stopped: 5 problem(s)" in text
    assert "not-hex-secret-value" not in out
    assert_nothing_started(out)
    assert not (root / "etc").exists() and not (root / "var").exists()
    assert bucket_objects(s3, bucket) == {}


def test_entrypoint_idle_keeps_the_machine_up_after_an_error(appliances, root, moto_endpoint, bucket,
                                                             standin_bin):
    env = appliance_env(root, moto_endpoint, bucket, "", path_first=standin_bin, ENTRYPOINT_IDLE="true")
    env.pop("AGE_SECRET_KEY")
    a = appliances(env)
    a.wait_for("ENTRYPOINT_IDLE=true: idling")
    assert a.proc.poll() is None
    assert a.stop(signal.SIGTERM, timeout=10) == 1
    assert "AGE_SECRET_KEY is required" in a.output


def test_noise_key_file_is_private_and_secrets_stay_out_of_rendered_files(
        appliances, root, moto_endpoint, bucket, age_key, standin_bin):
    env = appliance_env(root, moto_endpoint, bucket, age_key, path_first=standin_bin, ENTRYPOINT_DEBUG="true",
                        HEADSCALE_OIDC_ISSUER="https://idp.example.com", HEADSCALE_OIDC_CLIENT_ID="client",
                        HEADSCALE_OIDC_CLIENT_SECRET="oidc-secret-value", AWS_SECRET_ACCESS_KEY="s3-secret-value")
    a = appliances(env)
    a.wait_for("supervisord started")
    key = root / "var/lib/headscale/noise_private.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.read_text() == NOISE_KEY + "\n"
    oidc = root / "var/lib/headscale/oidc_client_secret"
    assert oidc.stat().st_mode & 0o777 == 0o600
    for rendered in (root / "etc/headscale").iterdir():
        text = rendered.read_text()
        for secret in (age_key, NOISE_KEY, "oidc-secret-value", "s3-secret-value"):
            assert secret not in text, rendered
    out = a.output
    assert "----- ENTRYPOINT_DEBUG:" in out and "client_secret_path" in out
    for secret in (age_key, NOISE_KEY, "oidc-secret-value", "s3-secret-value"):
        assert secret not in out
    assert a.stop() == 0

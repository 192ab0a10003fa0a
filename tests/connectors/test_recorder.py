"""The platform API stand-in other connector tests rely on."""
import threading
import time

import pytest
import requests

from tests.support.recorder import Recorder


def test_records_requests_and_answers_like_the_platforms():
    with Recorder() as api:
        wa = requests.post(api.url + "/v21.0/123/messages?x=1", json={"messaging_product": "whatsapp", "to": "1555"})
        tg = requests.post(api.url + "/bot1:abc/sendMessage", json={"chat_id": 42, "text": "hi"})
        other = requests.get(api.url + "/anything", headers={"X-Test": "yes"})
        assert wa.json()["messages"][0]["id"].startswith("wamid.")
        assert wa.json()["contacts"] == [{"input": "1555", "wa_id": "1555"}]
        assert tg.json()["ok"] is True and tg.json()["result"]["chat"]["id"] == 42
        assert other.json() == {"ok": True}
        first, _, third = api.requests
        assert first.method == "POST" and first.path == "/v21.0/123/messages" and first.query == {"x": ["1"]}
        assert first.json["to"] == "1555" and third.header("x-test") == "yes"
        assert [r.path for r in api.requests_to("/bot")] == ["/bot1:abc/sendMessage"]


def test_scripted_answers_are_used_the_given_number_of_times_newest_first():
    with Recorder() as api:
        api.respond("/a", status=500)
        api.respond("/a", status=429, headers={"Retry-After": "2"}, times=1)
        api.respond("/twiml", body="<Response/>", content_type="text/xml")
        first = requests.post(api.url + "/a/x")
        second = requests.post(api.url + "/a/x")
        assert (first.status_code, first.headers["Retry-After"]) == (429, "2")
        assert second.status_code == 500 and second.json()["error"]["code"] == 500
        twiml = requests.post(api.url + "/twiml", data={"CallSid": "CA1"})
        assert twiml.text == "<Response/>" and twiml.headers["Content-Type"] == "text/xml"
        assert api.requests[-1].form == {"CallSid": ["CA1"]}
        api.clear()
        assert requests.post(api.url + "/a").status_code == 200 and len(api.requests) == 1


def test_wait_for_counts_and_predicates_across_threads():
    with Recorder() as api:
        def later():
            time.sleep(0.2)
            requests.post(api.url + "/late", json={"n": 1})

        threading.Thread(target=later).start()
        assert api.wait_for(1, timeout=5)[0].path == "/late"
        threading.Thread(target=later).start()
        seen = api.wait_for(lambda rs: len(rs) == 2 and rs[-1].json == {"n": 1}, timeout=5)
        assert len(seen) == 2
        with pytest.raises(AssertionError, match="not met"):
            api.wait_for(3, timeout=0.2)


def test_start_stop_and_url():
    api = Recorder().start()
    url = api.url
    assert url.startswith("http://127.0.0.1:")
    api.stop()
    with pytest.raises(RuntimeError):
        api.url
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/", timeout=1)


def test_platform_defaults_hold_under_a_base_url_prefix():
    with Recorder() as api:
        tg = requests.post(api.url + "/telegram/bot1:abc/sendMessage", json={"chat_id": 7, "text": "x"}).json()
        ack = requests.post(api.url + "/telegram/bot1:abc/answerCallbackQuery", json={"callback_query_id": "q"}).json()
        wa = requests.post(api.url + "/graph/1/messages", json={"messaging_product": "whatsapp", "recipient": "US.1"})
        assert tg["result"]["chat"]["id"] == 7 and ack == {"ok": True, "result": True}
        assert wa.json()["contacts"][0]["input"] == "US.1"

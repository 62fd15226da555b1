"""What `voxplane dev calls` asks of the server for a routed call (voxplane/dev/calls.py): the room
livekit-sip has the server create (the rule's room name and room_config) and the caller's token
(the SIP participant the rule describes). The calls themselves, placed on agent pods the pod
runner runs as workers, are in tests/dev/test_pool_scaling.py and test_agent_workers.py."""

from __future__ import annotations

import jwt

from voxplane.dev.calls import Endpoints, caller_token, room_request
from voxplane.livekit.route import Call, Decision

ENDPOINTS = Endpoints("http://127.0.0.1:7880", "ws://127.0.0.1:7880", "vx-admin", "s" * 40, "127.0.0.1:6379")


def decision() -> Decision:
    answer = {"result": "ACCEPT", "room_name": "bv-call-_+15550100100_abc", "participant_identity": "sip_+15550100100",
              "participant_name": "Phone +15550100100", "participant_attributes": {"voxplane.io/tenant": "bellavista"},
              "room_config": {"agents": [{"agent_name": "bellavista-reservations"}], "departure_timeout": 20,
                              "empty_timeout": 300}}
    return Decision(call=Call(to="+13125550142", from_="+15550100100"), accepted=True, reason="", bridge="join",
                    room=answer["room_name"], agents=["bellavista-reservations"],
                    server={"dispatch": [answer]})


def test_the_room_is_the_rules_with_its_configuration() -> None:
    req = room_request(decision())
    assert req.name == "bv-call-_+15550100100_abc"
    assert [a.agent_name for a in req.agents] == ["bellavista-reservations"]
    assert (req.departure_timeout, req.empty_timeout) == (20, 300)


def test_the_caller_joins_as_the_sip_participant_the_rule_describes() -> None:
    claims = jwt.decode(caller_token(ENDPOINTS, decision(), "bv-call-_+15550100100_abc"), ENDPOINTS.api_secret,
                        algorithms=["HS256"], options={"verify_aud": False})
    assert claims["sub"] == "sip_+15550100100" and claims["name"] == "Phone +15550100100"
    assert claims["kind"] == "sip"
    attributes = dict(claims["attributes"])
    assert attributes.pop("sip.callID").startswith("SCL_")
    assert attributes == {"voxplane.io/tenant": "bellavista", "sip.phoneNumber": "+15550100100",
                          "sip.trunkPhoneNumber": "+13125550142"}
    assert (claims["video"]["roomJoin"], claims["video"]["room"]) == (True, "bv-call-_+15550100100_abc")

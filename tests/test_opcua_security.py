"""OPC-UA security against a real asyncua server, with certificates the tests make: every policy with
Sign and SignAndEncrypt; anonymous, username/password and certificate identities; and every way trust
can fail, each failing closed with a message that says which certificate and why."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("asyncua")

from connectors.opcua import OpcUaConnector, OpcUaSecurityError
from edgeflow.profiles import Device, DeviceProfile

pytestmark = [pytest.mark.server, pytest.mark.asyncio(loop_scope="module")]

PROFILE = DeviceProfile.model_validate(
    {
        "name": "Sim",
        "deviceResources": [
            {
                "name": "Constant",
                "attributes": {"nodeId": "ns=2;i=1007"},
                "properties": {"valueType": "Float64", "readWrite": "R"},
            },
            {
                "name": "Level",
                "attributes": {"nodeId": "ns=2;s=Boiler.Level"},
                "properties": {"valueType": "Float64", "readWrite": "RW"},
            },
        ],
    }
)

ALL_SECURE = [
    "Basic256Sha256_Sign",
    "Basic256Sha256_SignAndEncrypt",
    "Aes128Sha256RsaOaep_Sign",
    "Aes128Sha256RsaOaep_SignAndEncrypt",
    "Aes256Sha256RsaPss_Sign",
    "Aes256Sha256RsaPss_SignAndEncrypt",
]


async def secure_server(opcua_servers: Any, certs: Any) -> Any:
    return await opcua_servers(
        policies=["None", *ALL_SECURE],
        certificate=certs.server_cert,
        private_key=certs.server_key,
        trusted_clients=[certs.client_cert],
        users={"operator": "s3cret"},
        user_certificates=[certs.user_cert],
    )


def secured(
    certs: Any, sim: Any, policy: str = "Basic256Sha256", mode: str = "SignAndEncrypt", **over: Any
) -> dict[str, Any]:
    props: dict[str, Any] = {
        "Endpoint": sim.endpoint,
        "Policy": policy,
        "Mode": mode,
        "CertFile": str(certs.client_cert),
        "KeyFile": str(certs.client_key),
        "TrustedCerts": [str(certs.server_cert)],
        "Timeout": 3,
    }
    props.update(over)
    return props


async def read_with(props: dict[str, Any]) -> float:
    conn = OpcUaConnector({"reconnect_min": 5, "reconnect_max": 5})
    conn.add_device(Device(name="plc", profile_name="Sim", protocols={"opcua": props}), PROFILE)
    await conn.open()
    try:
        (value,) = await conn.read("plc", [PROFILE.resource("Constant")])
        return float(value.value)
    finally:
        await conn.close()


@pytest.mark.parametrize("endpoint", ALL_SECURE)
async def test_every_policy_with_sign_and_sign_and_encrypt(
    opcua_servers: Any, opcua_certs: Any, endpoint: str
) -> None:
    sim = await secure_server(opcua_servers, opcua_certs)
    policy, mode = endpoint.split("_")
    policy = {
        "Aes128Sha256RsaOaep": "Aes128_Sha256_RsaOaep",
        "Aes256Sha256RsaPss": "Aes256_Sha256_RsaPss",
    }.get(policy, policy)
    assert await read_with(secured(opcua_certs, sim, policy, mode)) == 199.99


async def test_username_and_password(opcua_servers: Any, opcua_certs: Any) -> None:
    sim = await secure_server(opcua_servers, opcua_certs)
    props = secured(opcua_certs, sim, "Basic256Sha256", "Sign", Username="operator", Password="s3cret")
    assert await read_with(props) == 199.99
    refused = sim.users.refused
    with pytest.raises(
        OpcUaSecurityError, match=r"refused the identity user 'operator' \(BadUserAccessDenied\)"
    ):
        await read_with({**props, "Password": "guess"})
    assert sim.users.refused == refused + 1


async def test_certificate_identity(opcua_servers: Any, opcua_certs: Any) -> None:
    sim = await secure_server(opcua_servers, opcua_certs)
    props = secured(
        opcua_certs,
        sim,
        "Aes256_Sha256_RsaPss",
        "SignAndEncrypt",
        UserCertFile=str(opcua_certs.user_cert),
        UserKeyFile=str(opcua_certs.user_key),
    )
    assert await read_with(props) == 199.99


async def test_an_untrusted_server_certificate_is_refused_before_any_secure_session(
    opcua_servers: Any, opcua_certs: Any
) -> None:
    sim = await secure_server(opcua_servers, opcua_certs)
    rejected = sim.rejected_clients
    with pytest.raises(OpcUaSecurityError) as info:
        await read_with(secured(opcua_certs, sim, TrustedCerts=[str(opcua_certs.stranger_cert)]))
    message = str(info.value)
    assert "the server certificate CN=simulator (SHA-256" in message
    assert "is not trusted: it is not in TrustedCerts" in message and "stranger.der" in message
    assert sim.rejected_clients == rejected  # edgeflow never even offered its certificate


async def test_the_server_refusing_edgeflows_certificate_says_which(
    opcua_servers: Any, opcua_certs: Any
) -> None:
    sim = await secure_server(opcua_servers, opcua_certs)
    rejected = sim.rejected_clients
    with pytest.raises(
        OpcUaSecurityError,
        match=r"refused edgeflow's application certificate CN=rogue .*BadCertificateUntrusted",
    ):
        await read_with(
            secured(
                opcua_certs, sim, CertFile=str(opcua_certs.rogue_cert), KeyFile=str(opcua_certs.rogue_key)
            )
        )
    assert sim.rejected_clients > rejected


async def test_no_silent_downgrade_when_the_policy_is_not_offered(
    opcua_servers: Any, opcua_certs: Any
) -> None:
    plain = await opcua_servers()  # offers None only
    with pytest.raises(
        OpcUaSecurityError,
        match=r"offers no endpoint with Basic256Sha256/SignAndEncrypt \(it offers None/None\); edgeflow does not fall back",
    ):
        await read_with(secured(opcua_certs, plain))


async def test_a_server_certificate_issued_by_a_trusted_ca(opcua_servers: Any, opcua_certs: Any) -> None:
    sim = await opcua_servers(
        policies=["Basic256Sha256_SignAndEncrypt"],
        certificate=opcua_certs.ca_server_cert,
        private_key=opcua_certs.ca_server_key,
    )
    assert await read_with(secured(opcua_certs, sim, TrustedCerts=[str(opcua_certs.ca_cert)])) == 199.99
    with pytest.raises(OpcUaSecurityError, match=r"CN=ca-simulator .* is not trusted"):
        await read_with(secured(opcua_certs, sim))  # trusting another server's own certificate is not enough

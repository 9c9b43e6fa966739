"""Autodiscover, autoconfig and RFC 6186 discovery scenarios.

The baseline (``healthy``) answers Autodiscover on every web host, so the first HTTPS method
(the root domain URL) returns the settings. These scenarios break one method at a time, or
make the emulator answer with redirects and errors (``Scenario.emulator["autodiscover"]``,
documented in ``analyzer.lab.emulator_autodiscover``).
"""

from __future__ import annotations

from analyzer.lab.scenario_model import Expect, HttpRule, Scenario

__all__ = ["SCENARIOS"]

_XML = "/autodiscover/autodiscover.xml"


def _root(domain: str) -> str:
    return f"https://{domain}{_XML}"


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="ad-root-only",
        description="Autodiscover answers only at https://<domain>; the autodiscover host 404s",
        http=(HttpRule(path="/autodiscover/", status=404, roles=("autodiscover",)),),
        expect=(
            Expect(code="autodiscover.found", status="pass", subject="alice@ad-root-only.test"),
            Expect(
                code="autodiscover.settings.found",
                status="pass",
                subject=_root("ad-root-only.test"),
            ),
        ),
    ),
    Scenario(
        name="ad-srv-only",
        description="Autodiscover only through the SRV record (to mail.<domain>); the root "
        "domain 404s and autodiscover.<domain> does not exist",
        records=(("_autodiscover._tcp", "SRV", "0 0 443 mail"),),
        remove=(("autodiscover", "A"), ("autodiscover", "AAAA")),
        http=(HttpRule(path="/autodiscover/", status=404, roles=("apex",)),),
        expect=(
            Expect(
                code="autodiscover.url.not_found", status="pass", subject=_root("ad-srv-only.test")
            ),
            Expect(
                code="autodiscover.settings.found",
                status="pass",
                subject="_autodiscover._tcp.ad-srv-only.test (SRV)",
            ),
            Expect(code="autodiscover.found", status="pass", subject="alice@ad-srv-only.test"),
        ),
    ),
    Scenario(
        name="ad-http-redirect",
        description="Autodiscover only through the HTTP redirect method: http://autodiscover "
        "redirects to https://mail.<domain>; no SRV record; the HTTPS methods 404",
        remove=(("_autodiscover._tcp", "SRV"),),
        http=(
            HttpRule(path="/autodiscover/", status=404, roles=("apex",)),
            HttpRule(path="/autodiscover/", status=404, roles=("autodiscover",), ports=(443,)),
            HttpRule(
                path=_XML,
                status=302,
                location="https://mail.{domain}" + _XML,
                roles=("autodiscover",),
                ports=(80,),
            ),
        ),
        expect=(
            Expect(
                code="autodiscover.redirect.http",
                status="pass",
                subject="http://autodiscover.ad-http-redirect.test" + _XML,
            ),
            Expect(
                code="autodiscover.method.http_redirect",
                status="warn",
                subject="alice@ad-http-redirect.test",
            ),
        ),
    ),
    Scenario(
        name="ad-redirect-addr",
        description="Autodiscover answers redirectAddr to a user of another domain "
        "(ad-redirect-target.test); credentials are withheld there without --trust-redirect",
        emulator={"autodiscover": {"redirect_addr": "alice@ad-redirect-target.test"}},
        expect=(
            Expect(
                code="autodiscover.redirect.address",
                status="pass",
                subject=_root("ad-redirect-addr.test"),
            ),
            Expect(
                code="autodiscover.redirect.other_domain",
                status="warn",
                subject=_root("ad-redirect-addr.test"),
            ),
            Expect(
                code="autodiscover.credentials.withheld",
                status="skip",
                subject=_root("ad-redirect-target.test") + " for alice@ad-redirect-target.test",
            ),
            Expect(
                code="autodiscover.not_judged",
                status="inconclusive",
                subject="alice@ad-redirect-addr.test",
            ),
        ),
    ),
    Scenario(
        name="ad-redirect-target",
        description="The domain ad-redirect-addr.test redirects to; it accepts that domain's "
        "user as well as its own",
        emulator={"extra_users": [["alice@ad-redirect-addr.test", "alice-lab-password"]]},
    ),
    Scenario(
        name="ad-redirect-chain",
        description="redirectUrl chain of 3: root domain → autodiscover → mail → autoconfig, "
        "which answers",
        emulator={
            "autodiscover": {
                "by_role": {
                    "apex": {"redirect_url": "https://autodiscover.{domain}" + _XML},
                    "autodiscover": {"redirect_url": "https://mail.{domain}" + _XML},
                    "mail": {"redirect_url": "https://autoconfig.{domain}" + _XML},
                }
            }
        },
        expect=(
            Expect(
                code="autodiscover.redirect.url",
                status="pass",
                subject=_root("ad-redirect-chain.test"),
            ),
            Expect(
                code="autodiscover.settings.found",
                status="pass",
                subject=_root("ad-redirect-chain.test"),
            ),
            Expect(
                code="autodiscover.found", status="pass", subject="alice@ad-redirect-chain.test"
            ),
        ),
    ),
    Scenario(
        name="ad-redirect-loop",
        description="redirectUrl loop: the root domain sends clients to the autodiscover host, "
        "which sends them back",
        emulator={
            "autodiscover": {
                "by_role": {
                    "apex": {"redirect_url": "https://autodiscover.{domain}" + _XML},
                    "autodiscover": {"redirect_url": "https://{domain}" + _XML},
                }
            }
        },
        expect=(
            Expect(
                code="autodiscover.redirect.loop",
                status="fail",
                subject=_root("ad-redirect-loop.test"),
            ),
            Expect(code="autodiscover.none", status="fail", subject="alice@ad-redirect-loop.test"),
        ),
    ),
    Scenario(
        name="ad-redirect-11",
        description="11 redirectUrl hops in a row: clients give up after 10",
        emulator={"autodiscover": {"redirect_hops": 11}},
        expect=(
            Expect(
                code="autodiscover.redirect.too_many",
                status="fail",
                subject=_root("ad-redirect-11.test"),
            ),
            Expect(code="autodiscover.none", status="fail", subject="alice@ad-redirect-11.test"),
        ),
    ),
    Scenario(
        name="ad-error-602",
        description="Autodiscover answers ErrorCode 602: the user's mailbox cannot be found",
        emulator={"autodiscover": {"error_code": 602}},
        expect=(
            Expect(
                code="autodiscover.error.user_not_found",
                status="fail",
                subject=_root("ad-error-602.test"),
            ),
            Expect(code="autodiscover.none", status="fail", subject="alice@ad-error-602.test"),
        ),
    ),
    Scenario(
        name="ad-ntlm-only",
        description="Autodiscover offers NTLM only (no Basic, no Negotiate)",
        emulator={"auth": {"/autodiscover/": ["NTLM"]}},
        expect=(
            Expect(
                code="autodiscover.auth.offered", status="pass", subject=_root("ad-ntlm-only.test")
            ),
            Expect(code="autodiscover.auth.ok", status="pass", subject=_root("ad-ntlm-only.test")),
            Expect(code="autodiscover.found", status="pass", subject="alice@ad-ntlm-only.test"),
        ),
    ),
    Scenario(
        name="ad-cert-mismatch",
        description="The autodiscover host's certificate names another host; the root domain "
        "is fine (ExRCA's classic)",
        certs={"autodiscover": "wrong_name"},
        expect=(
            Expect(
                code="tls.cert.name_mismatch",
                status="fail",
                subject="autodiscover.ad-cert-mismatch.test:443",
            ),
            Expect(code="autodiscover.found", status="pass", subject="alice@ad-cert-mismatch.test"),
        ),
    ),
    Scenario(
        name="ac-wellknown-only",
        description="Thunderbird autoconfig only at https://<domain>/.well-known/autoconfig/; "
        "autoconfig.<domain> answers 404",
        http=(HttpRule(path="/mail/config-v1.1.xml", status=404, roles=("autoconfig",)),),
        expect=(
            Expect(
                code="autoconfig.source.not_found",
                status="pass",
                subject="https://autoconfig.ac-wellknown-only.test/mail/config-v1.1.xml"
                "?emailaddress=alice%40ac-wellknown-only.test",
            ),
            Expect(
                code="autoconfig.config.found",
                status="pass",
                subject="https://ac-wellknown-only.test/.well-known/autoconfig/mail/config-v1.1.xml",
            ),
            Expect(
                code="autoconfig.settings.found",
                status="pass",
                subject="alice@ac-wellknown-only.test",
            ),
        ),
    ),
    Scenario(
        name="srv-imap-143-only",
        description='SRV records announce IMAP on 143 only (_imaps._tcp is ".") while 993 is '
        "open and autoconfig and Autodiscover announce it",
        records=(("_imaps._tcp", "SRV", "0 0 0 ."),),
        expect=(
            Expect(
                code="autoconfig.conflict", status="warn", subject="alice@srv-imap-143-only.test"
            ),
        ),
    ),
    Scenario(
        name="ac-http-only",
        description="Thunderbird autoconfig only over plain http: both https sources answer 404",
        http=(
            HttpRule(path="/mail/config-v1.1.xml", status=404, roles=("autoconfig",), ports=(443,)),
            HttpRule(path="/.well-known/autoconfig/", status=404, roles=("apex",), ports=(443,)),
        ),
        expect=(
            Expect(
                code="autoconfig.config.insecure_transport",
                status="warn",
                subject="http://autoconfig.ac-http-only.test/mail/config-v1.1.xml"
                "?emailaddress=alice%40ac-http-only.test",
            ),
        ),
    ),
    Scenario(
        name="ad-no-v2",
        description="No Autodiscover v2 (JSON) service: the ActiveSync URL comes from the "
        "mobilesync schema, asked because nothing else gives one",
        emulator={"autodiscover": {"v2": False}},
        expect=(
            Expect(code="autodiscover.v2.unavailable", status="warn",
                   subject="alice@ad-no-v2.test"),
            Expect(code="autodiscover.mobilesync.ok", status="pass",
                   subject="alice@ad-no-v2.test"),
            Expect(code="activesync.foldersync.ok", status="pass"),
        ),
    ),
    Scenario(
        name="ad-eas-guess",
        description="Neither Autodiscover v2 nor the mobilesync schema names the ActiveSync "
        "URL: the ActiveSync check guesses it on the EWS host, and says so",
        emulator={"autodiscover": {"v2": False, "mobilesync": False}},
        expect=(
            Expect(code="autodiscover.mobilesync.failed", status="fail",
                   subject="alice@ad-eas-guess.test"),
            Expect(code="activesync.foldersync.ok", status="pass"),
        ),
    ),
    Scenario(
        name="ad-v2-eas-elsewhere",
        description="Autodiscover v2 names another ActiveSync URL than the mobilesync schema",
        emulator={"autodiscover": {"v2": {
            "ActiveSync": "https://autodiscover.{domain}/Microsoft-Server-ActiveSync"}}},
        expect=(
            Expect(code="autodiscover.found", status="pass",
                   subject="alice@ad-v2-eas-elsewhere.test"),
        ),
    ),
    Scenario(
        name="ad-availability-site",
        description="ASUrl (the Availability service) names another site's EWS endpoint "
        "than EwsUrl: normal, reported as information",
        emulator={"autodiscover": {"settings": {
            "availability_url": "https://autodiscover.{domain}/EWS/Exchange.asmx"}}},
        expect=(
            Expect(code="autodiscover.settings.availability_url_differs", status="pass",
                   subject="alice@ad-availability-site.test"),
        ),
    ),
    Scenario(
        name="ad-v2-mismatch",
        description="Autodiscover v2 (JSON) names another EWS URL than the XML service",
        emulator={"autodiscover": {"v2": {"Ews": "https://ews.{domain}/EWS/Exchange.asmx"}}},
        expect=(
            Expect(
                code="autodiscover.v2.mismatch", status="warn", subject="alice@ad-v2-mismatch.test"
            ),
        ),
    ),
)

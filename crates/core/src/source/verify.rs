//! Checking that a webhook came from the provider: each scheme exactly as its provider
//! specifies it, over the raw body as received, with constant-time comparisons.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

use crate::time::Millis;

use super::{HmacAlgorithm, SignatureEncoding, Verification};

/// The Standard Webhooks specification's replay window, either side of `now`.
const STANDARD_WEBHOOKS_TOLERANCE_MS: u64 = 5 * 60 * 1000;

/// The request headers of a webhook, looked up by lowercase name.
pub trait Headers {
    /// The first value of the header `name` (lowercase), if present and visible ASCII.
    fn get(&self, name: &str) -> Option<&str>;
}

/// Why a webhook was refused (answered 401; the reason is logged and counted, never shown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A header the scheme needs is absent (its lowercase name).
    #[error("the {0} header is missing")]
    MissingHeader(String),
    /// A header is present but not in the scheme's form (its lowercase name).
    #[error("the {0} header is malformed")]
    Malformed(String),
    /// The signed timestamp is too far from now, in the past or the future.
    #[error("the timestamp is outside the tolerance")]
    StaleTimestamp,
    /// Well-formed, but no presented signature or credential is the expected one.
    #[error("no signature matches")]
    BadSignature,
}

impl Verification {
    /// Whether `body`, received with `headers` at `now`, was sent by the holder of the secret.
    pub fn verify(&self, headers: &dyn Headers, body: &[u8], now: Millis) -> Result<(), Rejection> {
        match self {
            Self::StandardWebhooks { key } => standard_webhooks(key, headers, body, now),
            Self::Github { secret } => github(secret, headers, body),
            Self::Stripe { secret, tolerance_ms } => stripe(secret, *tolerance_ms, headers, body, now),
            Self::Shopify { secret } => {
                const HEADER: &str = "x-shopify-hmac-sha256";
                let presented = decode_text(SignatureEncoding::Base64, required(headers, HEADER)?);
                let presented = presented.ok_or_else(|| malformed(HEADER))?;
                accept(Signer::new(HmacAlgorithm::Sha256, secret.as_bytes(), &[body]).matches(&presented))
            }
            Self::Hmac { header, secret, algorithm, encoding, prefix } => {
                let value = required(headers, header)?;
                let encoded = value.strip_prefix(prefix.as_str()).ok_or_else(|| malformed(header))?;
                let presented = decode_text(*encoding, encoded).ok_or_else(|| malformed(header))?;
                accept(Signer::new(*algorithm, secret.as_bytes(), &[body]).matches(&presented))
            }
            Self::Basic { username, password } => basic(username, password, headers),
            Self::ApiKey { header, value } => {
                accept(same_digest(required(headers, header)?.as_bytes(), value.as_bytes()))
            }
            Self::None => Ok(()),
        }
    }
}

fn standard_webhooks(key: &[u8], headers: &dyn Headers, body: &[u8], now: Millis) -> Result<(), Rejection> {
    let id = required(headers, "webhook-id")?;
    let timestamp = required(headers, "webhook-timestamp")?;
    let signatures = required(headers, "webhook-signature")?;
    let seconds = unix_seconds(timestamp).ok_or_else(|| malformed("webhook-timestamp"))?;
    // The window is checked before any MAC so that stale floods cost no hashing.
    within_tolerance(now, seconds, STANDARD_WEBHOOKS_TOLERANCE_MS)?;
    let mac =
        Signer::new(HmacAlgorithm::Sha256, key, &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body]);
    // Only `v1` is HMAC-SHA256; accepting another label would let a sender's other scheme
    // (or an attacker's relabelling) pass as this one.
    let matched = signatures
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .any(|presented| mac.matches(&presented));
    accept(matched)
}

fn github(secret: &str, headers: &dyn Headers, body: &[u8]) -> Result<(), Rejection> {
    const HEADER: &str = "x-hub-signature-256";
    let encoded = required(headers, HEADER)?.strip_prefix("sha256=").ok_or_else(|| malformed(HEADER))?;
    let presented = decode_text(SignatureEncoding::Hex, encoded).ok_or_else(|| malformed(HEADER))?;
    accept(Signer::new(HmacAlgorithm::Sha256, secret.as_bytes(), &[body]).matches(&presented))
}

fn stripe(
    secret: &str,
    tolerance_ms: u64,
    headers: &dyn Headers,
    body: &[u8],
    now: Millis,
) -> Result<(), Rejection> {
    const HEADER: &str = "stripe-signature";
    let fields: Vec<(&str, &str)> =
        required(headers, HEADER)?.split(',').filter_map(|f| f.split_once('=')).collect();
    let timestamp = fields.iter().find(|(name, _)| *name == "t").map(|(_, value)| *value);
    let timestamp = timestamp.ok_or_else(|| malformed(HEADER))?;
    let seconds = unix_seconds(timestamp).ok_or_else(|| malformed(HEADER))?;
    within_tolerance(now, seconds, tolerance_ms)?;
    // Stripe keys with the secret's text as shown (`whsec_…` included), not its decoding.
    let mac = Signer::new(HmacAlgorithm::Sha256, secret.as_bytes(), &[timestamp.as_bytes(), b".", body]);
    // `v0` is Stripe's test-mode scheme and unknown names are future ones: neither is `v1`.
    let matched = fields
        .iter()
        .filter(|(name, _)| *name == "v1")
        .filter_map(|(_, encoded)| decode_text(SignatureEncoding::Hex, encoded))
        .any(|presented| mac.matches(&presented));
    accept(matched)
}

fn basic(username: &str, password: &str, headers: &dyn Headers) -> Result<(), Rejection> {
    const HEADER: &str = "authorization";
    let (scheme, credentials) =
        required(headers, HEADER)?.split_once(' ').ok_or_else(|| malformed(HEADER))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(malformed(HEADER));
    }
    let presented = STANDARD.decode(credentials.trim_start_matches(' ')).map_err(|_| malformed(HEADER))?;
    accept(same_digest(&presented, format!("{username}:{password}").as_bytes()))
}

/// An HMAC over the signed content, kept unfinalized so that each candidate signature can
/// be checked against it (by `verify_slice`, in constant time) without hashing again.
enum Signer {
    Sha256(Hmac<Sha256>),
    Sha512(Hmac<Sha512>),
}

impl Signer {
    fn new(algorithm: HmacAlgorithm, key: &[u8], content: &[&[u8]]) -> Self {
        fn keyed<M: Mac + hmac::digest::KeyInit>(key: &[u8], content: &[&[u8]]) -> M {
            let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
            content.iter().for_each(|part| mac.update(part));
            mac
        }
        match algorithm {
            HmacAlgorithm::Sha256 => Self::Sha256(keyed(key, content)),
            HmacAlgorithm::Sha512 => Self::Sha512(keyed(key, content)),
        }
    }

    fn matches(&self, presented: &[u8]) -> bool {
        match self {
            Self::Sha256(mac) => mac.clone().verify_slice(presented).is_ok(),
            Self::Sha512(mac) => mac.clone().verify_slice(presented).is_ok(),
        }
    }
}

/// Whether two secrets are equal, in time independent of where they differ and of their
/// lengths: the comparison runs over fixed-size digests, never the secrets themselves.
fn same_digest(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter().zip(b.iter()).fold(0u8, |difference, (x, y)| difference | (x ^ y)) == 0
}

fn accept(matched: bool) -> Result<(), Rejection> {
    if matched { Ok(()) } else { Err(Rejection::BadSignature) }
}

fn required<'a>(headers: &'a dyn Headers, name: &str) -> Result<&'a str, Rejection> {
    headers.get(name).ok_or_else(|| Rejection::MissingHeader(name.to_owned()))
}

fn malformed(name: &str) -> Rejection {
    Rejection::Malformed(name.to_owned())
}

/// Hex is accepted in either case: providers differ, and the bytes are what is compared.
fn decode_text(encoding: SignatureEncoding, text: &str) -> Option<Vec<u8>> {
    match encoding {
        SignatureEncoding::Base64 => STANDARD.decode(text).ok(),
        SignatureEncoding::Hex => {
            let digits = text.as_bytes();
            if !digits.len().is_multiple_of(2) {
                return None;
            }
            let nibble = |d: u8| char::from(d).to_digit(16);
            digits.chunks(2).map(|pair| Some((nibble(pair[0])? << 4 | nibble(pair[1])?) as u8)).collect()
        }
    }
}

/// Unix seconds as plain digits: a sign or spaces would be signed text that means the same
/// instant as another, so they are refused rather than normalized.
fn unix_seconds(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Wide arithmetic so that no header value, however large, can overflow into acceptance.
fn within_tolerance(now: Millis, seconds: i64, tolerance_ms: u64) -> Result<(), Rejection> {
    let skew = (i128::from(now) - i128::from(seconds) * 1000).unsigned_abs();
    if skew > u128::from(tolerance_ms) { Err(Rejection::StaleTimestamp) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Map<'a>(Vec<(&'a str, &'a str)>);

    impl Headers for Map<'_> {
        fn get(&self, name: &str) -> Option<&str> {
            self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        }
    }

    fn missing(name: &str) -> Result<(), Rejection> {
        Err(Rejection::MissingHeader(name.into()))
    }

    fn malformed(name: &str) -> Result<(), Rejection> {
        Err(Rejection::Malformed(name.into()))
    }

    const BAD: Result<(), Rejection> = Err(Rejection::BadSignature);
    const STALE: Result<(), Rejection> = Err(Rejection::StaleTimestamp);

    // The Standard Webhooks specification's published vector (also in every reference library).
    const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SW_TIMESTAMP: &str = "1614265330";
    const SW_NOW: Millis = 1_614_265_330_000;
    const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SW_SIGNATURE: &str = "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn standard_webhooks() -> Verification {
        Verification::StandardWebhooks { key: STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap() }
    }

    fn sw_headers<'a>(timestamp: &'a str, signature: &'a str) -> Map<'a> {
        Map(vec![("webhook-id", SW_ID), ("webhook-timestamp", timestamp), ("webhook-signature", signature)])
    }

    #[test]
    fn standard_webhooks_accepts_the_specification_vector() {
        let signature = &format!("v1,{SW_SIGNATURE}");
        assert_eq!(standard_webhooks().verify(&sw_headers(SW_TIMESTAMP, signature), SW_BODY, SW_NOW), Ok(()));
    }

    #[test]
    fn standard_webhooks_accepts_any_one_matching_signature() {
        let several = &format!("v1,bm9wZQ== v1,not-base64! v1,{SW_SIGNATURE}");
        assert_eq!(standard_webhooks().verify(&sw_headers(SW_TIMESTAMP, several), SW_BODY, SW_NOW), Ok(()));
        let only_wrong =
            sw_headers(SW_TIMESTAMP, "v1,bm9wZQ== v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=");
        assert_eq!(standard_webhooks().verify(&only_wrong, SW_BODY, SW_NOW), BAD);
    }

    #[test]
    fn standard_webhooks_ignores_the_right_mac_under_another_version() {
        for label in ["v2", "v1a", "V1", "v1a,v1", ""] {
            let header = &format!("{label},{SW_SIGNATURE}");
            assert_eq!(
                standard_webhooks().verify(&sw_headers(SW_TIMESTAMP, header), SW_BODY, SW_NOW),
                BAD,
                "{label}"
            );
        }
    }

    #[test]
    fn standard_webhooks_refuses_a_wrong_secret_or_a_tampered_body() {
        let headers = sw_headers(SW_TIMESTAMP, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let other = Verification::StandardWebhooks { key: b"another key of 24 bytes!".to_vec() };
        assert_eq!(other.verify(&headers, SW_BODY, SW_NOW), BAD);
        assert_eq!(standard_webhooks().verify(&headers, br#"{"test": 2432232315}"#, SW_NOW), BAD);
        // The id and timestamp are signed too.
        let moved = Map(vec![
            ("webhook-id", "msg_other"),
            ("webhook-timestamp", SW_TIMESTAMP),
            ("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
        ]);
        assert_eq!(standard_webhooks().verify(&moved, SW_BODY, SW_NOW), BAD);
        let later = sw_headers("1614265331", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(standard_webhooks().verify(&later, SW_BODY, SW_NOW), BAD);
    }

    #[test]
    fn standard_webhooks_holds_a_five_minute_window_both_ways() {
        let headers = sw_headers(SW_TIMESTAMP, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let verify = |now| standard_webhooks().verify(&headers, SW_BODY, now);
        assert_eq!(verify(SW_NOW + 300_000), Ok(()));
        assert_eq!(verify(SW_NOW - 300_000), Ok(()));
        assert_eq!(verify(SW_NOW + 301_000), STALE);
        assert_eq!(verify(SW_NOW - 301_000), STALE);
        assert_eq!(verify(SW_NOW + 300_001), STALE);
    }

    #[test]
    fn standard_webhooks_names_a_missing_or_malformed_header() {
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let verify = |headers: Vec<(&str, &str)>| standard_webhooks().verify(&Map(headers), SW_BODY, SW_NOW);
        assert_eq!(
            verify(vec![("webhook-timestamp", SW_TIMESTAMP), ("webhook-signature", sig)]),
            missing("webhook-id")
        );
        assert_eq!(
            verify(vec![("webhook-id", SW_ID), ("webhook-signature", sig)]),
            missing("webhook-timestamp")
        );
        assert_eq!(
            verify(vec![("webhook-id", SW_ID), ("webhook-timestamp", SW_TIMESTAMP)]),
            missing("webhook-signature")
        );
        for timestamp in ["", "1614265330.5", "+1614265330", "-1", "soon", "99999999999999999999"] {
            assert_eq!(
                standard_webhooks().verify(&sw_headers(timestamp, sig), SW_BODY, SW_NOW),
                malformed("webhook-timestamp"),
                "{timestamp}"
            );
        }
    }

    // GitHub's documented example ("Validating webhook deliveries").
    const GH_BODY: &[u8] = b"Hello, World!";
    const GH_SIGNATURE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn github() -> Verification {
        Verification::Github { secret: "It's a Secret to Everybody".into() }
    }

    fn gh_headers(signature: &str) -> Map<'_> {
        Map(vec![("x-hub-signature-256", signature)])
    }

    #[test]
    fn github_accepts_its_documented_example_in_either_hex_case() {
        assert_eq!(github().verify(&gh_headers(GH_SIGNATURE), GH_BODY, 0), Ok(()));
        let upper = &format!("sha256={}", GH_SIGNATURE["sha256=".len()..].to_uppercase());
        assert_eq!(github().verify(&gh_headers(upper), GH_BODY, 0), Ok(()));
    }

    #[test]
    fn github_refuses_a_wrong_secret_a_tampered_body_or_a_missing_header() {
        let other = Verification::Github { secret: "It's a Secret to Nobody".into() };
        assert_eq!(other.verify(&gh_headers(GH_SIGNATURE), GH_BODY, 0), BAD);
        assert_eq!(github().verify(&gh_headers(GH_SIGNATURE), b"Hello, World?", 0), BAD);
        assert_eq!(github().verify(&Map(vec![]), GH_BODY, 0), missing("x-hub-signature-256"));
    }

    #[test]
    fn github_refuses_another_algorithm_and_bad_hex() {
        let header = "x-hub-signature-256";
        for value in [
            "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1",
            "sha256=zz7107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha256=é",
        ] {
            assert_eq!(github().verify(&gh_headers(value), GH_BODY, 0), malformed(header), "{value}");
        }
        // Well-formed hex of the wrong length is simply not the MAC.
        assert_eq!(github().verify(&gh_headers("sha256=757107ea"), GH_BODY, 0), BAD);
    }

    // Computed independently (Python's hmac) for the secret and payload below.
    const STRIPE_BODY: &[u8] = br#"{"id":"evt_1","type":"charge.succeeded"}"#;
    const STRIPE_NOW: Millis = 1_700_000_000_000;
    const STRIPE_GOOD: &str =
        "t=1700000000,v1=fb22ffbfe8f82e398afe03ad6d385a59a0083f46bbd8b0ffad81467124cf7673";

    fn stripe() -> Verification {
        Verification::Stripe { secret: "whsec_stripe_test_secret".into(), tolerance_ms: 300_000 }
    }

    fn stripe_headers(value: &str) -> Map<'_> {
        Map(vec![("stripe-signature", value)])
    }

    #[test]
    fn stripe_accepts_a_v1_signature_keyed_with_the_whole_secret() {
        assert_eq!(stripe().verify(&stripe_headers(STRIPE_GOOD), STRIPE_BODY, STRIPE_NOW), Ok(()));
        let decoded = Verification::Stripe { secret: "stripe_test_secret".into(), tolerance_ms: 300_000 };
        assert_eq!(decoded.verify(&stripe_headers(STRIPE_GOOD), STRIPE_BODY, STRIPE_NOW), BAD);
    }

    #[test]
    fn stripe_accepts_any_v1_and_ignores_other_schemes() {
        let second = stripe_headers(
            "t=1700000000,v1=0000000000000000000000000000000000000000000000000000000000000000,\
             v1=fb22ffbfe8f82e398afe03ad6d385a59a0083f46bbd8b0ffad81467124cf7673,v0=00,x=y,junk",
        );
        assert_eq!(stripe().verify(&second, STRIPE_BODY, STRIPE_NOW), Ok(()));
        let only_v0 = stripe_headers(
            "t=1700000000,v0=fb22ffbfe8f82e398afe03ad6d385a59a0083f46bbd8b0ffad81467124cf7673",
        );
        assert_eq!(stripe().verify(&only_v0, STRIPE_BODY, STRIPE_NOW), BAD);
        let v0_right_v1_wrong = stripe_headers(
            "t=1700000000,v0=fb22ffbfe8f82e398afe03ad6d385a59a0083f46bbd8b0ffad81467124cf7673,v1=00ff",
        );
        assert_eq!(stripe().verify(&v0_right_v1_wrong, STRIPE_BODY, STRIPE_NOW), BAD);
    }

    #[test]
    fn stripe_refuses_a_wrong_secret_a_tampered_body_or_a_missing_header() {
        let other = Verification::Stripe { secret: "whsec_other".into(), tolerance_ms: 300_000 };
        assert_eq!(other.verify(&stripe_headers(STRIPE_GOOD), STRIPE_BODY, STRIPE_NOW), BAD);
        assert_eq!(stripe().verify(&stripe_headers(STRIPE_GOOD), b"{}", STRIPE_NOW), BAD);
        assert_eq!(stripe().verify(&Map(vec![]), STRIPE_BODY, STRIPE_NOW), missing("stripe-signature"));
        let no_time = stripe_headers("v1=fb22ffbfe8f82e398afe03ad6d385a59a0083f46bbd8b0ffad81467124cf7673");
        assert_eq!(stripe().verify(&no_time, STRIPE_BODY, STRIPE_NOW), malformed("stripe-signature"));
        let bad_time = stripe_headers("t=soon,v1=00");
        assert_eq!(stripe().verify(&bad_time, STRIPE_BODY, STRIPE_NOW), malformed("stripe-signature"));
    }

    #[test]
    fn stripe_holds_its_tolerance() {
        let verify = |now| stripe().verify(&stripe_headers(STRIPE_GOOD), STRIPE_BODY, now);
        assert_eq!(verify(STRIPE_NOW + 300_000), Ok(()));
        assert_eq!(verify(STRIPE_NOW + 300_001), STALE);
        assert_eq!(verify(STRIPE_NOW - 300_001), STALE);
        let tight = Verification::Stripe { secret: "whsec_stripe_test_secret".into(), tolerance_ms: 1_000 };
        assert_eq!(tight.verify(&stripe_headers(STRIPE_GOOD), STRIPE_BODY, STRIPE_NOW + 1_001), STALE);
    }

    const SHOPIFY_BODY: &[u8] = br#"{"id":820982911946154508}"#;
    const SHOPIFY_SIGNATURE: &str = "7tYlNpRaZDLpdiCZWCDdDwwf9/oXqmD0ACeEofxrNBo=";

    fn shopify(secret: &str) -> Verification {
        Verification::Shopify { secret: secret.into() }
    }

    #[test]
    fn shopify_checks_a_base64_mac_of_the_body() {
        let headers = Map(vec![("x-shopify-hmac-sha256", SHOPIFY_SIGNATURE)]);
        assert_eq!(shopify("shpss_shopify_secret").verify(&headers, SHOPIFY_BODY, 0), Ok(()));
        assert_eq!(shopify("shpss_other").verify(&headers, SHOPIFY_BODY, 0), BAD);
        assert_eq!(shopify("shpss_shopify_secret").verify(&headers, b"{}", 0), BAD);
        assert_eq!(
            shopify("shpss_shopify_secret").verify(&Map(vec![]), SHOPIFY_BODY, 0),
            missing("x-shopify-hmac-sha256")
        );
        let garbled = Map(vec![("x-shopify-hmac-sha256", "7tYlNpRaZDLp*iCZ")]);
        assert_eq!(
            shopify("shpss_shopify_secret").verify(&garbled, SHOPIFY_BODY, 0),
            malformed("x-shopify-hmac-sha256")
        );
    }

    const CUSTOM_BODY: &[u8] = br#"{"ok":true}"#;
    const CUSTOM_SIGNATURE: &str =
        "sig=7UEy9bzTajFy/UFfPB1HT1s1uIeQ79leJCgijSLca9d/qALAV7XRliq1DR7yTgmoz9l4BEdVO7n08VLisYoJgA==";

    fn custom(secret: &str) -> Verification {
        Verification::Hmac {
            header: "x-signature".into(),
            secret: secret.into(),
            algorithm: HmacAlgorithm::Sha512,
            encoding: SignatureEncoding::Base64,
            prefix: "sig=".into(),
        }
    }

    #[test]
    fn hmac_checks_sha512_base64_after_the_prefix() {
        let headers = Map(vec![("x-signature", CUSTOM_SIGNATURE)]);
        assert_eq!(custom("custom-secret").verify(&headers, CUSTOM_BODY, 0), Ok(()));
        assert_eq!(custom("other-secret").verify(&headers, CUSTOM_BODY, 0), BAD);
        assert_eq!(custom("custom-secret").verify(&headers, br#"{"ok":false}"#, 0), BAD);
        assert_eq!(custom("custom-secret").verify(&Map(vec![]), CUSTOM_BODY, 0), missing("x-signature"));
        let unprefixed = Map(vec![("x-signature", &CUSTOM_SIGNATURE["sig=".len()..])]);
        assert_eq!(custom("custom-secret").verify(&unprefixed, CUSTOM_BODY, 0), malformed("x-signature"));
        let garbled = Map(vec![("x-signature", "sig=%%%")]);
        assert_eq!(custom("custom-secret").verify(&garbled, CUSTOM_BODY, 0), malformed("x-signature"));
    }

    #[test]
    fn hmac_sha256_hex_without_prefix_is_the_github_mac() {
        let plain = Verification::Hmac {
            header: "x-sig".into(),
            secret: "It's a Secret to Everybody".into(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            prefix: String::new(),
        };
        let headers = Map(vec![("x-sig", &GH_SIGNATURE["sha256=".len()..])]);
        assert_eq!(plain.verify(&headers, GH_BODY, 0), Ok(()));
        assert_eq!(plain.verify(&Map(vec![("x-sig", GH_SIGNATURE)]), GH_BODY, 0), malformed("x-sig"));
    }

    fn basic() -> Verification {
        Verification::Basic { username: "relay".into(), password: "hunter2".into() }
    }

    #[test]
    fn basic_compares_the_decoded_credentials() {
        let verify = |value: &str| basic().verify(&Map(vec![("authorization", value)]), b"", 0);
        assert_eq!(verify("Basic cmVsYXk6aHVudGVyMg=="), Ok(()));
        assert_eq!(verify("bASIC cmVsYXk6aHVudGVyMg=="), Ok(()));
        // "relay:hunter3", "relay:hunter2x", "relay"
        assert_eq!(verify("Basic cmVsYXk6aHVudGVyMw=="), BAD);
        assert_eq!(verify("Basic cmVsYXk6aHVudGVyMng="), BAD);
        assert_eq!(verify("Basic cmVsYXk="), BAD);
        assert_eq!(verify("Basic cmVsYXk6aHVudGVyMg"), malformed("authorization"));
        assert_eq!(verify("Basic !!!"), malformed("authorization"));
        assert_eq!(verify("Bearer cmVsYXk6aHVudGVyMg=="), malformed("authorization"));
        assert_eq!(verify("cmVsYXk6aHVudGVyMg=="), malformed("authorization"));
        assert_eq!(basic().verify(&Map(vec![]), b"", 0), missing("authorization"));
    }

    #[test]
    fn api_key_compares_the_whole_value() {
        let key = Verification::ApiKey { header: "x-api-key".into(), value: "k_live_123".into() };
        assert_eq!(key.verify(&Map(vec![("x-api-key", "k_live_123")]), b"", 0), Ok(()));
        for wrong in ["k_live_124", "k_live_12", "k_live_1234", ""] {
            assert_eq!(key.verify(&Map(vec![("x-api-key", wrong)]), b"", 0), BAD, "{wrong}");
        }
        assert_eq!(key.verify(&Map(vec![("x-other", "k_live_123")]), b"", 0), missing("x-api-key"));
    }

    #[test]
    fn none_accepts_anything() {
        assert_eq!(Verification::None.verify(&Map(vec![]), b"anything", 0), Ok(()));
    }

    #[test]
    fn same_digest_is_equality() {
        assert!(same_digest(b"abc", b"abc"));
        assert!(!same_digest(b"abc", b"abd"));
        assert!(!same_digest(b"abc", b"abcd"));
        assert!(same_digest(b"", b""));
    }
}

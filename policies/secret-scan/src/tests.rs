//! The attacks: secrets in nested arguments, in keys, split across content
//! blocks, behind invisible characters, overlapping, by the hundred; and
//! what reaches the agent once the host applies the verdict.

use arbiter_sdk::testing::{RequestBuilder, arguments_json, policy_from_json, redacted};
use arbiter_sdk::{Policy, Request, Verdict};
use serde_json::{Value, json};

use super::*;

const AWS: &str = "AKIAIOSFODNN7EXAMPLE";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const KEY_BLOCK: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7Vx\nq3nV9bNw\n-----END RSA PRIVATE KEY-----";

fn policy(settings: Value) -> SecretScan {
    policy_from_json(&settings.to_string()).unwrap()
}

fn scan() -> SecretScan {
    policy(json!({}))
}

fn post(text: &str) -> Request {
    RequestBuilder::tool_call("slack.post_message").args(json!({"channel": "#ops", "text": text})).build()
}

fn result(result: Value) -> Request {
    RequestBuilder::tool_call("warehouse.query").server("warehouse").result(result).build()
}

fn text_result(texts: &[&str]) -> Request {
    let content: Vec<Value> = texts.iter().map(|t| json!({"type": "text", "text": t})).collect();
    result(json!({"content": content, "isError": false}))
}

/// What the agent (or the tool) receives once the host masks the spans.
fn forwarded(request: &Request, verdict: &Verdict) -> String {
    assert!(verdict.is_allow(), "{:?}", verdict.reasons);
    let document = match (request.tool_call(), &request.action) {
        (Some(call), _) => arguments_json(call),
        (None, arbiter_sdk::Action::ToolResult(r)) => {
            // Rebuild the result object from its strings (enough to mask).
            let mut doc = json!({});
            for t in &r.texts {
                set(&mut doc, &t.pointer, Value::String(t.text.clone()));
            }
            doc
        }
        _ => unreachable!(),
    };
    redacted(&document, verdict).unwrap_or_else(|e| panic!("the host would refuse: {e}")).to_string()
}

/// Sets `value` at `pointer`, creating objects (and arrays for indices).
fn set(doc: &mut Value, pointer: &str, value: Value) {
    let mut at = doc;
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        at = match token.parse::<usize>() {
            Ok(i) => {
                if !at.is_array() {
                    *at = json!([]);
                }
                let items = at.as_array_mut().unwrap();
                while items.len() <= i {
                    items.push(json!({}));
                }
                &mut items[i]
            }
            Err(_) => {
                if !at.is_object() {
                    *at = json!({});
                }
                at.as_object_mut().unwrap().entry(token).or_insert(json!({}))
            }
        };
    }
    *at = value;
}

fn assert_no_secret_in_reasons(verdict: &Verdict, secrets: &[&str]) {
    for reason in &verdict.reasons {
        assert!(reason.message.len() < 1024, "{}", reason.message);
        for secret in secrets {
            assert!(!reason.message.contains(&secret[..8]), "{} leaks {secret}", reason.message);
        }
    }
}

#[test]
fn a_slack_message_goes_on_with_the_key_masked() {
    let request = post(&format!("creds: {AWS} and aws_secret_access_key={AWS_SECRET}, ok"));
    let verdict = scan().evaluate(&request);
    let codes: Vec<&str> = verdict.redactions().iter().map(|r| r.code.as_str()).collect();
    assert_eq!(codes, ["aws_access_key", "aws_secret_key"]);
    let out = forwarded(&request, &verdict);
    assert!(!out.contains(AWS) && !out.contains(AWS_SECRET), "{out}");
    assert!(out.contains("creds: [redacted:aws_access_key] and aws_secret_access_key=[redacted:aws_secret_key], ok"));
    assert!(out.contains("#ops"));
}

#[test]
fn every_detector_finds_its_kind() {
    let gh = format!("ghp_{}", "x9".repeat(18));
    let cases = [
        (format!("{KEY_BLOCK}\n"), "private_key"),
        ("curl -H 'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln'".to_owned(), "bearer_token"),
        (format!("token {gh}"), "github_token"),
        ("github_pat_11ABCDEFG0123456789_abcdefghijkl".to_owned(), "github_token"),
        ("xoxp-2048-4096-8192-abcdef".to_owned(), "slack_token"),
        ("https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX".to_owned(), "slack_webhook"),
        ("OPENAI_API_KEY=sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t".to_owned(), "openai_key"),
        ("ASIAY34FZKBOKMUTVV7A".to_owned(), "aws_access_key"),
    ];
    for (text, code) in cases {
        let verdict = scan().evaluate(&post(&text));
        let codes: Vec<&str> = verdict.redactions().iter().map(|r| r.code.as_str()).collect();
        assert!(codes.contains(&code), "{text}: {codes:?}");
        let out = forwarded(&post(&text), &verdict);
        assert!(out.contains(&format!("[redacted:{code}]")), "{out}");
    }
}

#[test]
fn prose_is_left_alone() {
    for text in [
        "the bearer of this note; risk-assessment-for-the-quarterly-report",
        "commit 0123456789abcdef0123456789abcdef01234567 fixed AKIA parsing",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
        "select count(*) from analytics.orders_daily",
    ] {
        let verdict = scan().evaluate(&post(text));
        assert!(verdict.obligations.is_empty(), "{text}: {:?}", verdict.redactions());
    }
}

#[test]
fn nested_arguments_are_masked_at_their_pointer() {
    let request = RequestBuilder::tool_call("slack.post_message")
        .args(json!({"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": format!("key {AWS}")}}]}))
        .build();
    let verdict = scan().evaluate(&request);
    assert_eq!(verdict.redactions()[0].pointer, "/blocks/0/text/text");
    assert!(!forwarded(&request, &verdict).contains(AWS));
}

#[test]
fn a_secret_in_a_key_refuses_and_is_not_repeated() {
    let request = RequestBuilder::tool_call("kv.put").args(json!({"data": {AWS: {"note": "x"}}})).build();
    let verdict = scan().evaluate(&request);
    assert!(verdict.is_deny());
    assert_eq!(verdict.codes(), ["secret_in_arguments"]);
    assert!(verdict.reasons[0].message.contains("aws_access_key at /data/[redacted] (a key)"), "{:?}", verdict.reasons);
    assert_no_secret_in_reasons(&verdict, &[AWS]);
    // The same key elsewhere is read once, and masked wherever it is shown.
    let twice = RequestBuilder::tool_call("kv.put").args(json!({"a": {AWS: "x"}, "b": {AWS: AWS}})).build();
    let verdict = scan().evaluate(&twice);
    assert!(verdict.reasons[0].message.contains("aws_access_key at /b/[redacted]"), "{:?}", verdict.reasons);
    assert_no_secret_in_reasons(&verdict, &[AWS]);
    // A result's member names are read too.
    let verdict = scan().evaluate(&result(json!({"structuredContent": {AWS: "v"}})));
    assert_eq!(verdict.codes(), ["secret_in_result"]);
    assert_no_secret_in_reasons(&verdict, &[AWS]);
}

#[test]
fn a_secret_split_across_content_blocks_is_masked_in_both() {
    let request = text_result(&["your key is AKIAIOSF", "ODNN7EXAMPLE, keep it"]);
    let verdict = scan().evaluate(&request);
    let spans: Vec<(&str, u32, u32)> =
        verdict.redactions().iter().map(|r| (r.pointer.as_str(), r.start, r.end)).collect();
    assert_eq!(spans, [("/content/0/text", 12, 20), ("/content/1/text", 0, 12)]);
    let out = forwarded(&request, &verdict);
    assert!(!out.contains("AKIAIOSF") && !out.contains("ODNN7EXAMPLE"), "{out}");
}

#[test]
fn a_private_key_streamed_in_chunks_is_masked_in_every_chunk() {
    let (a, rest) = KEY_BLOCK.split_at(20);
    let (b, c) = rest.split_at(25);
    let request = text_result(&["here:", a, b, c, "done"]);
    let verdict = scan().evaluate(&request);
    let pointers: Vec<&str> = verdict.redactions().iter().map(|r| r.pointer.as_str()).collect();
    assert_eq!(pointers, ["/content/1/text", "/content/2/text", "/content/3/text"]);
    let out = forwarded(&request, &verdict);
    assert!(!out.contains("MIIE") && !out.contains("q3nV9") && out.contains("here:") && out.contains("done"), "{out}");
    // The end of a key whose beginning was in no string we saw.
    let verdict = scan().evaluate(&text_result(&["q3nV9bNw\n-----END OPENSSH PRIVATE KEY-----\nthanks"]));
    assert_eq!((verdict.redactions()[0].start, verdict.redactions()[0].end), (0, 42));
}

#[test]
fn invisible_characters_do_not_hide_a_key() {
    let hidden = "AKIA\u{200B}IOSFODNN\u{FEFF}7EXAMPLE";
    let request = post(&format!("k={hidden}!"));
    let verdict = scan().evaluate(&request);
    let r = verdict.redactions();
    assert_eq!((r.len(), r[0].start as usize, r[0].end as usize), (1, 2, 2 + hidden.len()));
    assert!(forwarded(&request, &verdict).contains("k=[redacted:aws_access_key]!"));
}

#[test]
fn overlapping_findings_mask_the_union() {
    let gh = format!("ghp_{}", "Z7".repeat(18));
    let request = post(&format!("Authorization: Bearer {gh} ok"));
    let verdict = scan().evaluate(&request);
    let mut codes: Vec<&str> = verdict.redactions().iter().map(|r| r.code.as_str()).collect();
    codes.sort();
    assert_eq!(codes, ["bearer_token", "github_token"]);
    let out = forwarded(&request, &verdict);
    assert!(!out.contains("Z7Z7") && out.contains(" ok"), "{out}");
    // One detector's overlapping hits become one span.
    let twice = scan().evaluate(&post(&format!("{KEY_BLOCK}{KEY_BLOCK}")));
    assert_eq!(twice.redactions().len(), 1);
}

#[test]
fn more_spans_than_a_verdict_carries_refuses() {
    let many: Vec<String> = (0..MAX_REDACTIONS + 1).map(|i| format!("AKIA{i:016}")).collect();
    let request = text_result(&[&many.join(" ")]);
    let verdict = scan().evaluate(&request);
    assert_eq!(verdict.codes(), ["secret_in_result"]);
    assert_eq!(
        verdict.reasons[0].message,
        "257 findings: aws_access_key ×257 at /content/0/text in the result; more spans than the 256 one verdict may mask"
    );
    assert_no_secret_in_reasons(&verdict, &[&many[0]]);
    let fits = text_result(&[&many[..MAX_REDACTIONS].join(" ")]);
    let verdict = scan().evaluate(&fits);
    assert_eq!(verdict.redactions().len(), MAX_REDACTIONS);
    assert!(!forwarded(&fits, &verdict).contains("AKIA"));
}

#[test]
fn thousands_of_strings_are_one_scan() {
    // Chunks of one text: joined, so every split key is found.
    let chunks: Vec<&str> = (0..4000).map(|i| if i % 2 == 0 { "AKIAIOSF" } else { "ODNN7EXAMPLE" }).collect();
    let verdict = scan().evaluate(&text_result(&chunks));
    assert_eq!(verdict.codes(), ["secret_in_result"], "4000 spans are more than a verdict carries");
    // Rows of a table: members apart, each scanned, names once.
    let rows: Vec<Value> = (0..5000).map(|i| json!({"id": format!("row-{i}"), "note": "fine"})).collect();
    let mut rows_with_key = rows.clone();
    rows_with_key[4321]["note"] = json!(format!("oops {AWS}"));
    assert!(scan().evaluate(&result(json!({"structuredContent": {"rows": rows}}))).obligations.is_empty());
    let verdict = scan().evaluate(&result(json!({"structuredContent": {"rows": rows_with_key}})));
    assert_eq!(verdict.redactions()[0].pointer, "/structuredContent/rows/4321/note");
}

#[test]
fn strings_that_are_not_items_of_one_array_are_never_joined() {
    let request = result(json!({"structuredContent": {"a": "AKIAIOSF", "b": "ODNN7EXAMPLE",
        "c": "-----BEGIN PRIVATE KEY-----\nMIIE", "d": "unrelated"}}));
    let verdict = scan().evaluate(&request);
    let r = verdict.redactions();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!((r[0].pointer.as_str(), r[0].code.as_str()), ("/structuredContent/c", "private_key"));
    // A NUL of the document is no separator: it is skipped like an invisible character.
    let request = post("key AKIA\u{0}IOSFODNN7EXAMPLE");
    assert_eq!(scan().evaluate(&request).redactions().len(), 1);
}

#[test]
fn the_bundle_can_refuse_instead_per_kind() {
    let strict = policy(json!({"on_results": "deny"}));
    let verdict = strict.evaluate(&text_result(&[AWS]));
    assert_eq!(verdict.codes(), ["secret_in_result"]);
    assert_eq!(
        verdict.reasons[0].message,
        "1 finding: aws_access_key at /content/0/text in the result; the bundle refuses rather than masks"
    );
    assert!(strict.evaluate(&post(AWS)).is_allow(), "arguments still masked");
    let verdict = policy(json!({"on_arguments": "deny"})).evaluate(&post(AWS));
    assert_eq!(verdict.codes(), ["secret_in_arguments"]);
    assert_no_secret_in_reasons(&verdict, &[AWS]);
    // The refusal names its spans all the same: the host masks the audit
    // record and an escalation's summary with them (never the call: it
    // does not go on).
    let codes: Vec<&str> = verdict.redactions().iter().map(|r| r.code.as_str()).collect();
    assert_eq!(codes, ["aws_access_key"]);
}

#[test]
fn a_secret_named_by_its_member_is_found_without_words_around_it() {
    let request =
        result(json!({"structuredContent": {"Credentials": {"SecretAccessKey": AWS_SECRET, "AccessKeyId": AWS}}}));
    let verdict = scan().evaluate(&request);
    let mut codes: Vec<&str> = verdict.redactions().iter().map(|r| r.code.as_str()).collect();
    codes.sort();
    assert_eq!(codes, ["aws_access_key", "aws_secret_key"]);
    // Without the name, 40 base64 characters are any digest.
    assert!(scan().evaluate(&post(AWS_SECRET)).obligations.is_empty());
}

#[test]
fn markers_and_patterns_from_the_bundle() {
    let policy = policy(json!({
        "markers": ["Patient-ID:"],
        "patterns": [{"code": "acme_token", "prefix": "acme_", "charset": "hex", "min_length": 16}]
    }));
    let request = post("PATIENT-id: 4711 via acme_0123456789abcdef0 and acme_123");
    let verdict = policy.evaluate(&request);
    let codes: Vec<&str> = verdict.redactions().iter().map(|r| r.code.as_str()).collect();
    assert_eq!(codes, ["pii_marker", "acme_token"]);
    let out = forwarded(&request, &verdict);
    assert!(out.contains("[redacted:pii_marker] 4711 via [redacted:acme_token] and acme_123"), "{out}");
}

#[test]
fn other_actions_and_clean_messages_pass() {
    assert!(scan().evaluate(&RequestBuilder::llm_request("gpt-4o-2024-08-06", 1, 1).build()).is_allow());
    assert!(scan().evaluate(&RequestBuilder::tool_listing("s").build()).is_allow());
    let clean = scan().evaluate(&text_result(&["42 rows"]));
    assert!(clean.is_allow() && clean.obligations.is_empty() && clean.reasons.is_empty());
}

#[test]
fn bad_settings_name_the_field() {
    let err = |s: Value| policy_from_json::<SecretScan>(&s.to_string()).err().unwrap();
    assert!(err(json!({"markers": ["ab"]})).contains("settings.markers[0]"));
    assert!(err(json!({"markers": ["okay", "line\nbreak"]})).contains("settings.markers[1]: no control"));
    assert!(err(json!({"on_results": "mask"})).contains("on_results"));
    let pattern = |code: &str, min: usize| json!({"patterns": [{"code": code, "prefix": "p_", "charset": "hex", "min_length": min}]});
    assert!(err(pattern("Bad-Code", 16)).contains("settings.patterns[0].code"));
    assert!(err(pattern("ok", 2)).contains("settings.patterns[0].min_length"));
}

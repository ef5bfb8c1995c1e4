//! The examples of `docs/protocol.md` ("## Messages") and `docs/http-api.md` stay true: every
//! message section has one JSON example of its own type, every terminal → hub example is a
//! frame the hub's parser accepts as that message, and every JSON example of both documents is
//! JSON (once the `…` that marks a shortened part is taken out).

use serde_json::Value;

const PROTOCOL: &str = include_str!("../../docs/protocol.md");
const HTTP_API: &str = include_str!("../../docs/http-api.md");

/// One section of "## Messages": a `###` heading naming a message type, and its text.
struct Section<'a> {
    ty: &'a str,
    body: &'a str,
}

/// The message sections, in document order.
fn sections(doc: &str) -> Vec<Section<'_>> {
    let start = doc
        .find("\n## Messages\n")
        .expect("docs/protocol.md has \"## Messages\"");
    let rest = &doc[start + 1..];
    // The section runs to the next level-2 heading (or the end).
    let end = rest[1..].find("\n## ").map_or(rest.len(), |i| i + 1);
    let messages = &rest[..end];
    let mut out = Vec::new();
    for part in messages.split("\n### `").skip(1) {
        let Some((ty, body)) = part.split_once("`\n") else {
            panic!("a message heading without a closing backtick: {part:.40}")
        };
        // A group heading (`### Leases`) ends the body of the message before it.
        let body = body.split("\n### ").next().unwrap_or(body);
        out.push(Section { ty, body });
    }
    out
}

/// The fenced code blocks tagged `json` in `text`.
fn json_blocks(text: &str) -> Vec<&str> {
    text.split("```json\n")
        .skip(1)
        .map(|b| b.split("\n```").next().unwrap_or(b))
        .collect()
}

/// The example with its shortened parts (`[…]`, `,…`) taken out, parsed.
fn parse_example(block: &str) -> Result<Value, String> {
    let text = block.replace("[…]", "[]").replace(",…", "");
    serde_json::from_str(&text).map_err(|e| format!("{e} in {block}"))
}

#[test]
fn every_message_section_has_one_example_of_its_type() {
    let secs = sections(PROTOCOL);
    assert!(
        secs.len() >= 50,
        "only {} message sections found",
        secs.len()
    );
    for s in &secs {
        let blocks = json_blocks(s.body);
        assert_eq!(blocks.len(), 1, "{}: {} JSON examples", s.ty, blocks.len());
        let v = parse_example(blocks[0]).unwrap_or_else(|e| panic!("{}: {e}", s.ty));
        assert_eq!(v["type"].as_str(), Some(s.ty), "{}: example {v}", s.ty);
        let to_hub = s.body.trim_start().starts_with("terminal → hub");
        let from_hub = s.body.trim_start().starts_with("hub → ");
        assert!(
            to_hub != from_hub,
            "{}: the section must start with its direction",
            s.ty
        );
    }
}

#[test]
fn every_terminal_to_hub_example_is_accepted_by_the_parser() {
    let mut checked = 0;
    for s in sections(PROTOCOL) {
        if !s.body.trim_start().starts_with("terminal → hub") {
            continue;
        }
        let block = json_blocks(s.body)[0];
        assert!(
            !block.contains('…') || block.contains("\"eyJ…\""),
            "{}: a request example must be complete",
            s.ty
        );
        match poshub::protocol::parse(block) {
            Ok(p) => assert_eq!(p.msg.type_name(), s.ty, "{}", s.ty),
            Err(e) => panic!(
                "{}: the hub refuses the example: {} {}",
                s.ty, e.code, e.message
            ),
        }
        checked += 1;
    }
    assert!(checked >= 18, "only {checked} request examples");
}

#[test]
fn every_json_example_of_the_http_api_is_json() {
    let blocks = json_blocks(HTTP_API);
    assert!(blocks.len() > 15, "only {} examples", blocks.len());
    for b in blocks {
        parse_example(b).unwrap_or_else(|e| panic!("docs/http-api.md: {e}"));
    }
}

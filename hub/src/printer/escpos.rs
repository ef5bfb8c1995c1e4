//! ESC/POS rendering of a kitchen ticket for 80 mm thermal printers: initialise, a large
//! station title, a header with table, order, ticket and time, one bold line per item with its
//! quantity and its note underneath, then feed and cut. Text from terminals is reduced to
//! printable ASCII, so a product name can never smuggle printer commands.

use serde_json::Value;

use crate::station::Station;
use crate::store::kitchen::TicketRec;

/// Characters per line in font A on 80 mm paper (42 fits 72 mm of printable width safely).
pub const WIDTH: usize = 42;

const ESC: u8 = 0x1b;
const GS: u8 = 0x1d;
/// `ESC @`: initialise the printer.
pub const INIT: [u8; 2] = [ESC, b'@'];
/// `GS V 66 0`: feed to the cutter and cut (partial cut).
pub const CUT: [u8; 4] = [GS, b'V', 66, 0];

/// Keeps printable ASCII; common accented letters lose their accent, anything else becomes `?`.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .map(|c| match c {
            ' '..='~' => c,
            'à' | 'á' | 'â' | 'ä' | 'ã' | 'å' => 'a',
            'è' | 'é' | 'ê' | 'ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ò' | 'ó' | 'ô' | 'ö' | 'õ' => 'o',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            'ñ' => 'n',
            'ß' => 's',
            'À' | 'Á' | 'Â' | 'Ä' => 'A',
            'È' | 'É' | 'Ê' | 'Ë' => 'E',
            'Ö' | 'Ó' | 'Ò' => 'O',
            'Ü' | 'Ú' | 'Ù' => 'U',
            _ => '?',
        })
        .collect()
}

/// Splits text into lines of at most `width` characters, breaking at spaces when it can.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        let mut word = word.to_string();
        while word.len() > width {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            let rest = word.split_off(width);
            out.push(word);
            word = rest;
        }
        if !cur.is_empty() && cur.len() + 1 + word.len() > width {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(&word);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One line of a ticket as printed: quantity, name and note.
fn item(line: &Value) -> (String, String, Option<String>) {
    let qty = match line.get("quantity").or_else(|| line.get("qty")) {
        Some(Value::Number(n)) => n.to_string(),
        _ => "1".to_string(),
    };
    let name = text_of(line.get("name"))
        .or_else(|| text_of(line.get("productName")))
        .or_else(|| text_of(line.get("fullProductName")))
        .or_else(|| text_of(line.get("productId")).map(|p| format!("product {p}")))
        .unwrap_or_else(|| "item".to_string());
    let note = text_of(line.get("note")).or_else(|| text_of(line.get("customerNote")));
    (qty, name, note)
}

/// Local wall-clock `HH:MM` of `ms`.
fn clock(ms: u64) -> String {
    use chrono::TimeZone;
    let local = i64::try_from(ms)
        .ok()
        .map(|ms| chrono::Local.timestamp_millis_opt(ms));
    match local.and_then(chrono::LocalResult::single) {
        Some(t) => t.format("%H:%M").to_string(),
        None => "--:--".to_string(),
    }
}

fn push_line(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(b'\n');
}

/// The complete ESC/POS byte stream of one ticket.
pub fn render(ticket_id: &str, t: &TicketRec) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&INIT);
    // Title: centred, double width and height.
    out.extend_from_slice(&[ESC, b'a', 1, ESC, b'!', 0x30]);
    let title = Station::parse(&t.station).map_or("TICKET", Station::title);
    push_line(&mut out, title);
    out.extend_from_slice(&[ESC, b'!', 0, ESC, b'a', 0]);
    // Header: table (large), order, ticket, time.
    if let Some(table) = t.table_json.as_deref() {
        let table = crate::protocol::inbound::table_key_of(table);
        out.extend_from_slice(&[ESC, b'!', 0x10]);
        push_line(&mut out, &sanitize(&format!("Table {table}")));
        out.extend_from_slice(&[ESC, b'!', 0]);
    }
    for l in wrap(&sanitize(&format!("Order: {}", t.pos_reference)), WIDTH) {
        push_line(&mut out, &l);
    }
    for l in wrap(&sanitize(&format!("Ticket: {ticket_id}")), WIDTH) {
        push_line(&mut out, &l);
    }
    push_line(&mut out, &format!("Time: {}", clock(t.created_ms)));
    push_line(&mut out, &"-".repeat(WIDTH));
    // Lines: bold "2 x Burger", the note indented underneath.
    let lines: Vec<Value> = serde_json::from_str(&t.lines_json).unwrap_or_default();
    for line in &lines {
        let (qty, name, note) = item(line);
        let head = sanitize(&format!("{qty} x {name}"));
        out.extend_from_slice(&[ESC, b'E', 1]);
        for l in wrap(&head, WIDTH) {
            push_line(&mut out, &l);
        }
        out.extend_from_slice(&[ESC, b'E', 0]);
        if let Some(note) = note {
            for l in wrap(&sanitize(&note), WIDTH - 4) {
                push_line(&mut out, &format!("  > {l}"));
            }
        }
    }
    push_line(&mut out, &"-".repeat(WIDTH));
    // Feed past the cutter, then cut.
    out.extend_from_slice(&[ESC, b'd', 4]);
    out.extend_from_slice(&CUT);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(lines: &str) -> TicketRec {
        TicketRec {
            station: "kds".into(),
            pos_reference: "Order 00012-001-0007".into(),
            lines_json: lines.into(),
            table_json: Some("\"T5\"".into()),
            status: "new".into(),
            terminal_id: "pos-1".into(),
            seq: 1,
            last_seq: 1,
            created_ms: 0,
            updated_ms: 0,
            printed_ms: 0,
        }
    }

    #[test]
    fn ticket_has_init_header_lines_notes_and_cut() {
        let b = render(
            "k-1",
            &ticket(
                r#"[{"name":"Burger","quantity":2,"note":"no onions"},{"productName":"Crème brûlée","qty":1}]"#,
            ),
        );
        let text = String::from_utf8_lossy(&b);
        assert!(b.starts_with(&INIT));
        assert!(b.ends_with(&CUT));
        for want in [
            "KITCHEN",
            "Table T5",
            "Order: Order 00012-001-0007",
            "Ticket: k-1",
            "Time: ",
            "2 x Burger",
            "  > no onions",
            "1 x Creme brulee",
        ] {
            assert!(text.contains(want), "missing {want:?} in {text:?}");
        }
    }

    #[test]
    fn terminal_text_cannot_inject_printer_commands() {
        let b = render(
            "k\u{1b}@",
            &ticket(r#"[{"name":"Beer\u001dV\u0000","quantity":1}]"#),
        );
        let body = &b[INIT.len()..b.len() - CUT.len()];
        assert!(
            !body.windows(2).any(|w| w == [GS, b'V']),
            "no cut inside the ticket"
        );
        assert!(
            !body.windows(2).any(|w| w == INIT),
            "no re-initialisation inside the ticket"
        );
        assert_eq!(wrap("aaaa bbbb cccc", 9), vec!["aaaa bbbb", "cccc"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
    }
}

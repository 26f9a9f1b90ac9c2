//! Boot progress (issue 21): what a machine reports at `/nodes/<mac>/progress`, read as a
//! pure function of the request. The listener ([`super::service`]) checks the machine's
//! address and its rate, and turns a report into a `progress` event; nothing is stored.
//!
//! A report is `stage` (required) and `message` (optional), from the query string, a form
//! body (`application/x-www-form-urlencoded`, what `wget --post-data` and `curl -d` send) or a
//! JSON object body; the body wins over the query. GET and POST only; at most
//! [`MAX_BODY`] bytes of body.

use serde::Deserialize;

/// The largest body read.
pub const MAX_BODY: usize = 4096;

/// The longest stage name.
pub const MAX_STAGE: usize = 128;

/// The longest message kept (longer ones are cut at a character boundary).
pub const MAX_MESSAGE: usize = 2048;

/// A report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The installation stage (`early`, `late`, `partman`, `done`...): the machine's words.
    pub stage: String,
    /// A free-form message.
    pub message: Option<String>,
}

/// Why a request is not a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// Not GET or POST.
    #[error("only GET and POST")]
    Method,
    /// No `stage`, or an empty one.
    #[error("no stage")]
    NoStage,
    /// A stage that is too long or holds control characters.
    #[error("a stage is at most 128 characters, none of them control characters")]
    BadStage,
    /// A body that does not parse as its content type says.
    #[error("unreadable body: {0}")]
    BadBody(String),
}

#[derive(Debug, Default, Deserialize)]
struct Fields {
    stage: Option<String>,
    message: Option<String>,
}

/// Reads a report from a request's method, query string, content type and body.
pub fn parse(
    method: &str,
    query: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Report, Reject> {
    if method != "GET" && method != "POST" {
        return Err(Reject::Method);
    }
    let mut fields = match query {
        Some(q) if !q.is_empty() => form(q.as_bytes())?,
        _ => Fields::default(),
    };
    if !body.is_empty() {
        let mime = content_type
            .and_then(|c| c.split(';').next())
            .map(|c| c.trim().to_ascii_lowercase());
        let from_body = match mime.as_deref() {
            Some("application/json") => serde_json::from_slice::<Fields>(body)
                .map_err(|e| Reject::BadBody(format!("JSON: {e}")))?,
            // Forms, and bodies sent with no type or text/plain (`wget --post-data` from
            // older busybox sends none): read as a form.
            _ => form(body)?,
        };
        fields.stage = from_body.stage.or(fields.stage);
        fields.message = from_body.message.or(fields.message);
    }
    let stage = fields
        .stage
        .filter(|s| !s.is_empty())
        .ok_or(Reject::NoStage)?;
    if stage.len() > MAX_STAGE || stage.chars().any(char::is_control) {
        return Err(Reject::BadStage);
    }
    let message = fields.message.map(|mut m| {
        if m.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !m.is_char_boundary(end) {
                end -= 1;
            }
            m.truncate(end);
        }
        m
    });
    Ok(Report { stage, message })
}

/// A form (or query string); unknown keys are ignored, a repeated key's last value wins.
fn form(bytes: &[u8]) -> Result<Fields, Reject> {
    let mut f = Fields::default();
    for (k, v) in form_urlencoded::parse(bytes) {
        match &*k {
            "stage" => f.stage = Some(v.into_owned()),
            "message" => f.message = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn report(stage: &str, message: Option<&str>) -> Report {
        Report {
            stage: stage.to_owned(),
            message: message.map(str::to_owned),
        }
    }

    #[test]
    fn a_report_comes_from_the_query_a_form_or_json() {
        assert_eq!(
            parse("GET", Some("stage=early&message=hello+there%21"), None, b""),
            Ok(report("early", Some("hello there!")))
        );
        assert_eq!(
            parse(
                "POST",
                None,
                Some("application/x-www-form-urlencoded"),
                b"stage=late&message=done"
            ),
            Ok(report("late", Some("done")))
        );
        assert_eq!(
            parse(
                "POST",
                Some("stage=ignored"),
                Some("application/json; charset=utf-8"),
                br#"{"stage":"partman","message":"disk sda"}"#
            ),
            Ok(report("partman", Some("disk sda"))),
            "the body wins over the query"
        );
        assert_eq!(
            parse("POST", Some("stage=q"), None, b"message=m"),
            Ok(report("q", Some("m"))),
            "fields the body lacks come from the query"
        );
        assert_eq!(
            parse("GET", Some("stage=x&x=1"), None, b""),
            Ok(report("x", None))
        );
    }

    #[test]
    fn bad_reports_are_refused_with_a_reason() {
        assert_eq!(
            parse("PUT", Some("stage=a"), None, b""),
            Err(Reject::Method)
        );
        assert_eq!(parse("GET", None, None, b""), Err(Reject::NoStage));
        assert_eq!(
            parse("GET", Some("stage="), None, b""),
            Err(Reject::NoStage)
        );
        assert_eq!(
            parse("GET", Some("stage=a%0Ab"), None, b""),
            Err(Reject::BadStage)
        );
        let long = format!("stage={}", "a".repeat(MAX_STAGE + 1));
        assert_eq!(parse("GET", Some(&long), None, b""), Err(Reject::BadStage));
        assert!(matches!(
            parse("POST", None, Some("application/json"), b"{\"stage\": 3}"),
            Err(Reject::BadBody(_))
        ));
        assert!(matches!(
            parse("POST", None, Some("application/json"), b"[1,2"),
            Err(Reject::BadBody(_))
        ));
    }

    #[test]
    fn a_long_message_is_cut_at_a_character_boundary() {
        let body = format!("stage=s&message={}", "é".repeat(MAX_MESSAGE));
        let r = parse("POST", None, None, body.as_bytes()).unwrap();
        let m = r.message.unwrap();
        assert!(m.len() <= MAX_MESSAGE && m.len() >= MAX_MESSAGE - 1);
        assert!(m.chars().all(|c| c == 'é'));
    }
}

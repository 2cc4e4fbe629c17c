//! The console's pages: server-rendered HTML (maud escapes every value), one stylesheet,
//! no script. Forms post back and are answered with a redirect.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::api::admin::model::*;

/// The stylesheet: system fonts, tabular figures, tables that scroll sideways on a phone.
const STYLE: &str = r#"
:root { --fg: #1d232b; --muted: #5f6b7a; --line: #dfe3e8; --bg: #f6f7f9; --card: #fff;
  --accent: #2457c5; --ok: #1a7f37; --warn: #9a6700; --bad: #c62828; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
header { background: #17202b; color: #fff; padding: 0 24px; display: flex; flex-wrap: wrap;
  align-items: center; gap: 4px 20px; }
header .brand { font-weight: 650; letter-spacing: .02em; padding: 14px 0; }
header nav { display: flex; flex-wrap: wrap; gap: 2px; flex: 1; }
header nav a { color: #c9d3df; text-decoration: none; padding: 14px 10px; }
header nav a.here, header nav a:hover { color: #fff; box-shadow: inset 0 -3px 0 #6ea0ff; }
header form { margin: 0; }
main { max-width: 1280px; margin: 0 auto; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 16px; font-weight: 650; }
h2 { font-size: 17px; margin: 28px 0 10px; font-weight: 650; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 9px 12px; border-bottom: 1px solid var(--line);
  vertical-align: top; white-space: nowrap; }
th { font-size: 12px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted);
  font-weight: 600; background: #fafbfc; }
tr:last-child td { border-bottom: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.wrap { white-space: normal; max-width: 420px; overflow-wrap: anywhere; }
code, .mono { font: 13px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.state { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
  font-weight: 600; }
.state.active, .state.delivered, .state.done, .state.ok { background: #dafbe1; color: var(--ok); }
.state.paused, .state.pending, .state.notifying, .state.blocked { background: #fff8c5; color: var(--warn); }
.state.disabled, .state.orphaned, .state.dead, .state.done_with_failures, .state.failed { background: #ffebe9; color: var(--bad); }
.muted { color: var(--muted); }
.notice { background: #ddf4ff; border: 1px solid #b6e3ff; padding: 10px 14px; border-radius: 6px;
  margin-bottom: 16px; }
.error { background: #ffebe9; border: 1px solid #ffcecb; padding: 10px 14px; border-radius: 6px;
  margin-bottom: 16px; }
form.inline { display: inline; margin: 0; }
form.filters { display: flex; flex-wrap: wrap; gap: 10px; align-items: end; margin-bottom: 16px; }
label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); gap: 3px; }
input[type=text], input[type=password], input[type=search] { font: inherit; padding: 6px 9px;
  border: 1px solid #c5ccd6; border-radius: 6px; min-width: 200px; background: #fff; }
button { font: inherit; font-size: 14px; padding: 6px 14px; border-radius: 6px; cursor: pointer;
  border: 1px solid #c5ccd6; background: #fff; color: var(--fg); }
button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
header button { background: transparent; color: #c9d3df; border-color: #3a4656; }
.timeline { list-style: none; margin: 0; padding: 0 0 0 18px; border-left: 2px solid var(--line); }
.timeline li { position: relative; padding: 8px 0 8px 8px; }
.timeline li::before { content: ""; position: absolute; left: -25px; top: 14px; width: 10px;
  height: 10px; border-radius: 50%; background: var(--muted); }
.timeline li.ok::before { background: var(--ok); } .timeline li.failed::before { background: var(--bad); }
pre.response { background: #f3f4f6; padding: 8px; border-radius: 6px; margin: 6px 0 0;
  white-space: pre-wrap; overflow-wrap: anywhere; max-width: 900px; }
.login { max-width: 380px; margin: 12vh auto; background: var(--card); border: 1px solid var(--line);
  border-radius: 10px; padding: 28px; }
.login input { width: 100%; margin: 6px 0 16px; }
.delivery { padding: 12px 16px; border-bottom: 1px solid var(--line); }
.delivery:last-child { border-bottom: 0; }
@media (max-width: 640px) { main { padding: 14px; } header { padding: 0 14px; } }
"#;

/// The pages, for the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Destinations,
    Messages,
    DeadLetters,
    Regulations,
    Instances,
}

const NAV: [(Page, &str, &str); 5] = [
    (Page::Destinations, "/console/destinations", "Destinations"),
    (Page::Messages, "/console/messages", "Messages"),
    (Page::DeadLetters, "/console/dead-letters", "Dead letters"),
    (Page::Regulations, "/console/regulations", "Regulations"),
    (Page::Instances, "/console/instances", "Instances"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · webhookd" }
            style { (PreEscaped(STYLE)) }
        }
    }
}

/// A signed-in page: navigation, an optional notice, the content.
pub fn layout(
    page: Page,
    title: &str,
    csrf: &str,
    notice: Option<&str>,
    content: Markup,
) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header {
                    div.brand { "webhookd" }
                    nav {
                        @for (p, href, label) in NAV {
                            a href=(href) class=[(p == page).then_some("here")] { (label) }
                        }
                    }
                    form.inline method="post" action="/console/logout" {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" { "Sign out" }
                    }
                }
                main {
                    @if let Some(notice) = notice { div.notice role="status" { (notice) } }
                    (content)
                }
            }
        }
    }
    .into_string()
}

pub fn login(error: Option<&str>) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Sign in"))
            body {
                form.login method="post" action="/console/login" {
                    h1 { "webhookd" }
                    @if let Some(error) = error { div.error role="alert" { (error) } }
                    label for="token" { "Admin token" }
                    input #token type="password" name="token" autocomplete="current-password" required autofocus;
                    button.primary type="submit" { "Sign in" }
                    p.muted { "The " code { "server.admin_token" } " of webhookd's configuration." }
                }
            }
        }
    }
    .into_string()
}

/// A request the console could not serve.
pub fn problem(message: &str) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Problem"))
            body {
                div.login {
                    h1 { "webhookd" }
                    div.error role="alert" { (message) }
                    a href="/console" { "Back to the console" }
                }
            }
        }
    }
    .into_string()
}

fn state_badge(text: &str) -> Markup {
    html! { span class={ "state " (text) } { (text.replace('_', " ")) } }
}

fn or_dash(value: Option<&str>) -> Markup {
    html! {
        @match value { Some(v) => (v), None => span.muted { "—" } }
    }
}

fn destination_state(state: DestinationState) -> &'static str {
    match state {
        DestinationState::Active => "active",
        DestinationState::Paused => "paused",
        DestinationState::Disabled => "disabled",
        DestinationState::Blocked => "blocked",
        DestinationState::Orphaned => "orphaned",
    }
}

fn seconds(age: f64) -> String {
    if age < 120.0 {
        format!("{age:.0} s")
    } else if age < 7200.0 {
        format!("{:.0} min", age / 60.0)
    } else {
        format!("{:.1} h", age / 3600.0)
    }
}

pub fn destinations(list: &DestinationList, csrf: &str) -> Markup {
    html! {
        h1 { "Destinations" }
        div.card {
            table {
                thead { tr {
                    th { "Source" } th { "Destination" } th { "State" } th.num { "Queue" }
                    th.num { "Oldest pending" } th.num { "Dead letters" } th.num { "Success (1 h)" }
                    th { "Last error" } th { "" }
                } }
                tbody {
                    @for d in &list.destinations {
                        @let state = destination_state(d.state);
                        tr data-destination={ (d.source) "/" (d.destination) } {
                            td { (d.source) }
                            td { strong { (d.destination) } }
                            td {
                                (state_badge(state))
                                @if let Some(why) = d.disabled_reason.as_deref().or(d.blocked_reason.as_deref()) {
                                    div.muted { (why) }
                                }
                                @if let Some(since) = &d.failing_since { div.muted { "failing since " (since) } }
                                @for url in &d.gone_urls { div.muted { "gone: " code { (url) } } }
                            }
                            td.num.queue { (d.queue_depth) }
                            td.num { @match d.oldest_pending_age_seconds { Some(a) => (seconds(a)), None => span.muted { "—" } } }
                            td.num {
                                @if d.dead_letters > 0 {
                                    a href={ "/console/dead-letters?source=" (urlencode(&d.source)) "&destination=" (urlencode(&d.destination)) } { (d.dead_letters) }
                                } @else { "0" }
                            }
                            td.num { @match d.success_rate_last_hour { Some(r) => (format!("{:.1} %", r * 100.0)), None => span.muted { "—" } } }
                            td.wrap { (or_dash(d.last_error.as_deref())) @if let Some(at) = &d.last_error_at { div.muted { (at) } } }
                            td {
                                @if d.state != DestinationState::Orphaned {
                                @let (action, label) = if d.state == DestinationState::Active || d.state == DestinationState::Blocked { ("pause", "Pause") } else { ("resume", "Resume") };
                                form.inline method="post" action={ "/console/destinations/" (urlencode(&d.source)) "/" (urlencode(&d.destination)) "/" (action) } {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button type="submit" { (label) }
                                }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What the messages page was asked for.
pub struct MessageSearch<'a> {
    pub message_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
}

pub fn messages(search: &MessageSearch<'_>, found: &[MessageView], searched: bool) -> Markup {
    html! {
        h1 { "Messages" }
        form.filters method="get" action="/console/messages" {
            label { "messageId" input type="search" name="messageId" value=[search.message_id]; }
            label { "or the latest of a userId" input type="search" name="userId" value=[search.user_id]; }
            button.primary type="submit" { "Find" }
        }
        @if searched && found.is_empty() {
            div.error { "No event found." }
        }
        @for message in found {
            @for event in &message.events {
                h2 { code { (message.message_id) } " " span.muted { (event.event_type) " in " (event.source) ", received " (event.received_at) } }
                div.card {
                    @if event.deliveries.is_empty() { div.delivery.muted { "No deliveries (no destination took it)." } }
                    @for d in &event.deliveries {
                        div.delivery {
                            strong { (d.destination) } " " (state_badge(&d.state))
                            " " span.muted { (d.attempt_count) " attempt(s)" }
                            @if let Some(next) = &d.next_attempt_at { " " span.muted { "· next " (next) } }
                            @if d.attempts.is_empty() { p.muted { "Not attempted yet." } }
                            ul.timeline {
                                @for a in &d.attempts {
                                    @let ok = a.status.is_some_and(|s| (200..300).contains(&s));
                                    li class=(if ok { "ok" } else { "failed" }) {
                                        span.mono { (a.at) } " · "
                                        @match a.status { Some(s) => strong { (s) }, None => strong { "no response" } }
                                        " · " (a.latency_ms) " ms · " code { (a.url) }
                                        @if let Some(e) = &a.error { div { (e) } }
                                        @if let Some(body) = &a.response_body { @if !body.is_empty() { pre.response { (body) } } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The dead letters page's filters, as given.
pub struct DeadLetterFilters<'a> {
    pub source: Option<&'a str>,
    pub destination: Option<&'a str>,
    pub since: Option<&'a str>,
}

pub fn dead_letters(filters: &DeadLetterFilters<'_>, page: &DeadLetterPage, csrf: &str) -> Markup {
    html! {
        h1 { "Dead letters" }
        form.filters method="get" action="/console/dead-letters" {
            label { "Source" input type="text" name="source" value=[filters.source]; }
            label { "Destination" input type="text" name="destination" value=[filters.destination]; }
            label { "Dead since (ISO 8601)" input type="text" name="since" value=[filters.since] placeholder="2026-11-01T00:00:00Z"; }
            button type="submit" { "Filter" }
        }
        @if page.dead_letters.is_empty() {
            div.card { table { tbody { tr { td.muted { "No dead letters." } } } } }
        } @else {
            form #replay method="post" action="/console/dead-letters/replay" {
                input type="hidden" name="csrf" value=(csrf);
                div.card {
                    table {
                        thead { tr {
                            th { "" } th.num { "Delivery" } th { "Source" } th { "Destination" } th { "messageId" }
                            th { "Type" } th.num { "Attempts" } th { "Died" } th { "Last error" }
                        } }
                        tbody {
                            @for l in &page.dead_letters {
                                tr {
                                    td { input type="checkbox" name="deliveryId" value=(l.delivery_id) aria-label={ "select " (l.delivery_id) }; }
                                    td.num { (l.delivery_id) }
                                    td { (l.source) } td { (l.destination) }
                                    td { a.mono href={ "/console/messages?messageId=" (urlencode(&l.message_id)) } { (l.message_id) } }
                                    td { (l.event_type) } td.num { (l.attempt_count) }
                                    td.mono { (l.dead_at) }
                                    td.wrap { (or_dash(l.last_error.as_deref())) }
                                }
                            }
                        }
                    }
                }
                p { button.primary type="submit" { "Replay selected" } }
            }
            @if let Some(cursor) = page.next_cursor {
                p { a href={ "/console/dead-letters?cursor=" (cursor)
                    @if let Some(s) = filters.source { "&source=" (urlencode(s)) }
                    @if let Some(d) = filters.destination { "&destination=" (urlencode(d)) }
                    @if let Some(s) = filters.since { "&since=" (urlencode(s)) } } { "Next page →" } }
            }
        }
    }
}

pub fn regulations(
    list: &[RegulationStatus],
    suppressions: &SuppressionList,
    csrf: &str,
) -> Markup {
    html! {
        h1 { "Regulations" }
        p.muted { "User deletion requests (" code { "POST /admin/v1/regulations" } "), newest first." }
        div.card {
            table {
                thead { tr {
                    th { "Regulation" } th { "Type" } th.num { "Users" } th { "Status" } th { "Created" }
                    th { "Applied" } th.num { "Purged" } th { "Notifications (delivered / total)" }
                } }
                tbody {
                    @if list.is_empty() { tr { td.muted colspan="8" { "No regulations." } } }
                    @for r in list {
                        tr {
                            td.mono { (r.regulation_id) }
                            td { (match r.regulation_type { RegulationTypeName::DeleteOnly => "DELETE_ONLY", RegulationTypeName::SuppressWithDelete => "SUPPRESS_WITH_DELETE" }) }
                            td.num { (r.subject_count) }
                            td { (state_badge(match r.status { RegulationState::Pending => "pending", RegulationState::Notifying => "notifying", RegulationState::Done => "done", RegulationState::DoneWithFailures => "done_with_failures" })) }
                            td.mono { (r.created_at) }
                            td.mono { (or_dash(r.applied_at.as_deref())) }
                            td.num { (r.purged_deliveries) }
                            td {
                                @for n in &r.notifications {
                                    div { (n.source) "/" (n.destination) ": " (n.delivered) " / " (n.total)
                                        @if n.dead > 0 { " " span.state.dead { (n.dead) " dead" } } }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Suppressions" }
        p.muted { "Users whose new events are dropped at ingest." }
        div.card {
            table {
                thead { tr { th { "Source" } th { "userId" } th { "Regulation" } th { "Since" } th { "" } } }
                tbody {
                    @if suppressions.suppressions.is_empty() { tr { td.muted colspan="5" { "No suppressions." } } }
                    @for s in &suppressions.suppressions {
                        tr {
                            td { (s.source) } td.mono { (s.user_id) } td.mono { (s.regulation_id) } td.mono { (s.created_at) }
                            td {
                                form.inline method="post" action={ "/console/suppressions/" (urlencode(&s.source)) "/" (urlencode(&s.user_id)) "/lift" } {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button type="submit" { "Lift" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn instances(list: &InstanceList) -> Markup {
    html! {
        h1 { "Instances" }
        div.card {
            table {
                thead { tr {
                    th { "Instance" } th { "Address" } th { "Version" } th { "Started" } th { "Last heartbeat" }
                    th { "Live" } th.num { "Destinations" } th { "Config" }
                } }
                tbody {
                    @for i in &list.instances {
                        tr {
                            td.mono { (i.id) @if i.is_self { " " span.muted { "(this one)" } } }
                            td.mono { (i.address) } td { (i.version) }
                            td.mono { (i.started_at) } td.mono { (i.last_heartbeat) }
                            td { (state_badge(if i.live { "ok" } else { "failed" })) }
                            td.num { (i.destinations_owned) }
                            td { @if i.same_config { "same" } @else { span.state.failed { "differs" } } }
                        }
                    }
                }
            }
        }
    }
}

/// A path segment or query value, percent-encoded.
pub fn urlencode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

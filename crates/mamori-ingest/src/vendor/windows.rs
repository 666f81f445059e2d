//! Windows remote-access events under the same contract as the appliances:
//!
//! * **NPS** (Security channel, `Microsoft-Windows-Security-Auditing`): 6272 granted, 6273
//!   denied, 6274/6275 discarded, 6276 quarantined, 6277/6278 granted → `radius_login`;
//!   `user.name` from `SubjectUserName` (or the fully qualified name), `source.ip` from
//!   `CallingStationID` when it is an address (it is for VPN clients; Wi-Fi gives a MAC).
//! * **RRAS** (`RemoteAccess` provider): 20271 "connected from … but failed an authentication
//!   attempt" → `vpn_login` failure; 20272/20274 connected → `vpn_login` success.
//! * **RD Gateway** (`Microsoft-Windows-TerminalServices-Gateway`): 200/300 met the
//!   connection/resource authorisation policy → `remote_gateway_login` success, 201/301 did
//!   not → failure; 302 connected to a resource → `remote_gateway_connect` success, 304 failed
//!   to → failure; 303 disconnected → `remote_gateway_disconnect`. `user.name` from
//!   `Username`, `source.ip` from `IpAddress`.

use mamori_event::{Event, Interner, Value};

use super::{parse_ip, Norm};

fn text(ev: &Event, k: &str) -> Option<String> {
    ev.get(k)
        .map(|v| v.to_text().trim().to_owned())
        .filter(|v| !v.is_empty() && v != "-")
}

/// Adds the normalised fields to a Windows event that is one of the above; others unchanged.
pub(crate) fn normalize(ev: &mut Event, names: &mut Interner) {
    let Some(id) = ev.get("EventID").and_then(|v| v.as_f64()).map(|f| f as i64) else {
        return;
    };
    // Most events are none of these: decided by the id before any text is read.
    if !matches!(id, 6272..=6278 | 20271 | 20272 | 20274 | 200 | 201 | 300..=304) {
        return;
    }
    let provider = text(ev, "Provider_Name").unwrap_or_default();
    let channel = text(ev, "Channel").unwrap_or_default().to_ascii_lowercase();
    let mut n;
    if (6272..=6278).contains(&id)
        && (channel == "security" || provider.contains("Security-Auditing"))
    {
        n = Norm::new(
            "windows-nps",
            "Microsoft",
            "Network Policy Server",
            "windows",
            "windows",
        );
        let outcome = match id {
            6272 | 6276 | 6277 | 6278 => "success",
            _ => "failure",
        };
        n.auth("radius_login", Some(outcome));
        if let Some(u) =
            text(ev, "SubjectUserName").or_else(|| text(ev, "FullyQualifiedSubjectUserName"))
        {
            n.user(&u);
        }
        if let Some(c) = text(ev, "CallingStationID") {
            n.ip("source.ip", &c);
        }
        if let Some(c) = text(ev, "ClientIPAddress").filter(|c| parse_ip(c).is_some()) {
            n.set("observer.ip", c);
        }
    } else if provider.eq_ignore_ascii_case("RemoteAccess") && matches!(id, 20271 | 20272 | 20274) {
        n = Norm::new(
            "windows-rras",
            "Microsoft",
            "Routing and Remote Access",
            "windows",
            "windows",
        );
        n.auth(
            "vpn_login",
            Some(if id == 20271 { "failure" } else { "success" }),
        );
        // Insertion strings: [CoId,] user, address, … (unnamed `Data`).
        let data: Vec<String> = match ev.get("Data") {
            Some(Value::List(items)) => items.iter().map(|v| v.to_text().into_owned()).collect(),
            Some(v) => vec![v.to_text().into_owned()],
            None => Vec::new(),
        };
        if let Some(i) = data.iter().position(|d| parse_ip(d).is_some()) {
            n.ip("source.ip", &data[i]);
            if let Some(u) = i.checked_sub(1).and_then(|j| data.get(j)) {
                if !u.starts_with("CoId") {
                    n.user(u);
                }
            }
        }
    } else if provider.contains("TerminalServices-Gateway")
        && matches!(id, 200 | 201 | 300 | 301 | 302 | 303 | 304)
    {
        n = Norm::new(
            "windows-rdgateway",
            "Microsoft",
            "Remote Desktop Gateway",
            "windows",
            "windows",
        );
        match id {
            200 | 300 => n.auth("remote_gateway_login", Some("success")),
            201 | 301 => n.auth("remote_gateway_login", Some("failure")),
            302 => n.auth("remote_gateway_connect", Some("success")),
            304 => n.auth("remote_gateway_connect", Some("failure")),
            _ => n.action("remote_gateway_disconnect", "session"),
        }
        if let Some(u) = text(ev, "Username") {
            n.user(&u);
        }
        if let Some(ip) = text(ev, "IpAddress") {
            n.ip("source.ip", &ip);
        }
    } else {
        return;
    }
    // Keep Windows' own logsource (the engine maps Channel/EventID); only add the category.
    n.ls_product = None;
    n.emit(ev, names);
}

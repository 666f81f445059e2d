//! Windows event naming, shared by the EVTX reader and the Windows-in-JSON variants.
//!
//! The rendered event (`{"Event": {"System": …, "EventData": …}}`, either with the `evtx`
//! crate's `X_attributes` siblings or evtx_dump's `X: {"#attributes": …, "#text": …}`) is
//! flattened to the names SigmaHQ rules and the benchmark file use:
//!
//! * System element `X` → `X`; its attribute `a` → `X_a` (`Provider_Name`, `Provider_Guid`,
//!   `Execution_ProcessID`, `Security_UserID`, `Correlation_ActivityID`, `EventID_Qualifiers`);
//!   `TimeCreated`'s `SystemTime` → `TimeCreated` (also the event timestamp). The numeric System
//!   fields are `Int` even where a file stored them as strings.
//! * `EventData/Data[@Name=X]` → `X`; unnamed `Data` → `Data` (a `List` when repeated).
//! * `UserData` and any other element: leaf element names at top level (`#text` names its
//!   parent), attributes as `Element_attr`; `xmlns` attributes are dropped.

use mamori_event::{Event, FieldName, Interner, Value};
use serde_json::{Map, Value as Json};

use crate::json::{json_value, parse_timestamp};

/// Flattens the value of the `Event` key.
pub(crate) fn flatten_event(event: &Map<String, Json>, ev: &mut Event, names: &mut Interner) {
    let mut f = Flat {
        names,
        buf: String::new(),
    };
    for (k, v) in event {
        match k.as_str() {
            "System" => {
                if let Json::Object(sys) = v {
                    f.system(sys, ev);
                }
            }
            "EventData" => f.event_data(v, ev),
            "RenderingInfo" => {
                // Only the rendered message is worth a field; the rest duplicates System.
                if let Some(m) = v.get("Message") {
                    f.leaf("Message", m, ev);
                }
            }
            "#attributes" | "Event_attributes" => {}
            _ if k.ends_with("_attributes") => {}
            _ => f.leaves(k, v, ev),
        }
    }
    if let Some(Value::Str(t)) = ev.get("TimeCreated").cloned() {
        ev.timestamp = parse_timestamp(&t);
        ev.timestamp_raw = Some(t.as_str().into());
    }
}

struct Flat<'n> {
    names: &'n mut Interner,
    buf: String,
}

const NUMERIC_SYSTEM: &[&str] = &[
    "EventID",
    "Version",
    "Level",
    "Task",
    "Opcode",
    "EventRecordID",
    "Execution_ProcessID",
    "Execution_ThreadID",
    "EventID_Qualifiers",
];

impl Flat<'_> {
    fn name(&mut self, s: &str) -> FieldName {
        self.names.intern(s)
    }

    /// `elem_attr` without allocating a new string per field.
    fn joined(&mut self, elem: &str, attr: &str) -> FieldName {
        self.buf.clear();
        self.buf.push_str(elem);
        self.buf.push('_');
        self.buf.push_str(attr);
        self.names.intern(&self.buf)
    }

    fn system(&mut self, sys: &Map<String, Json>, ev: &mut Event) {
        for (k, v) in sys {
            if let Some(elem) = k.strip_suffix("_attributes") {
                self.system_attrs(elem, v, ev);
                continue;
            }
            match v {
                Json::Object(o) => {
                    if let Some(t) = o.get("#text") {
                        self.system_value(k, t, ev);
                    }
                    if let Some(a) = o.get("#attributes") {
                        self.system_attrs(k, a, ev);
                    }
                }
                // An element with attributes only (`Security`, `Correlation`): nothing here.
                Json::Null => {}
                _ => self.system_value(k, v, ev),
            }
        }
    }

    fn system_attrs(&mut self, elem: &str, attrs: &Json, ev: &mut Event) {
        let Json::Object(attrs) = attrs else { return };
        for (a, v) in attrs {
            if a.starts_with("xmlns") {
                continue;
            }
            if elem == "TimeCreated" && a == "SystemTime" {
                let n = self.name("TimeCreated");
                ev.push(n, json_value(v));
                continue;
            }
            let n = self.joined(elem, a);
            let value = typed_system(n.as_str(), v);
            ev.push(n, value);
        }
    }

    fn system_value(&mut self, k: &str, v: &Json, ev: &mut Event) {
        let n = self.name(k);
        let value = typed_system(k, v);
        ev.push(n, value);
    }

    fn event_data(&mut self, v: &Json, ev: &mut Event) {
        match v {
            Json::Object(o) => {
                for (k, x) in o {
                    if k == "#attributes" {
                        self.attrs("EventData", x, ev);
                    } else if let Some(elem) = k.strip_suffix("_attributes") {
                        self.attrs(elem, x, ev);
                    } else {
                        self.leaves(k, x, ev);
                    }
                }
            }
            // `<EventData/>` or text directly inside EventData.
            Json::Null => {}
            other => self.leaf("EventData", other, ev),
        }
    }

    fn attrs(&mut self, elem: &str, attrs: &Json, ev: &mut Event) {
        let Json::Object(attrs) = attrs else { return };
        for (a, v) in attrs {
            if a.starts_with("xmlns") {
                continue;
            }
            let n = self.joined(elem, a);
            ev.push(n, json_value(v));
        }
    }

    /// Leaf element names at top level.
    fn leaves(&mut self, name: &str, v: &Json, ev: &mut Event) {
        match v {
            Json::Object(o) => {
                for (k, x) in o {
                    match k.as_str() {
                        "#text" => self.leaf(name, x, ev),
                        "#attributes" => self.attrs(name, x, ev),
                        _ => {
                            if let Some(elem) = k.strip_suffix("_attributes") {
                                self.attrs(elem, x, ev);
                            } else {
                                self.leaves(k, x, ev);
                            }
                        }
                    }
                }
            }
            Json::Array(items) if items.iter().any(|i| i.is_object()) => {
                for i in items {
                    self.leaves(name, i, ev);
                }
            }
            _ => self.leaf(name, v, ev),
        }
    }

    fn leaf(&mut self, name: &str, v: &Json, ev: &mut Event) {
        let n = self.name(name);
        ev.push(n, json_value(v));
        // Defender and others name Data `Product Name`; rules and the benchmark file also use
        // the name without spaces.
        if name.contains(' ') {
            self.buf.clear();
            self.buf.extend(name.chars().filter(|c| *c != ' '));
            let n = self.names.intern(&self.buf);
            ev.push(n, json_value(v));
        }
    }
}

/// The numeric System fields as `Int` even when stored as text (some exported logs do).
fn typed_system(name: &str, v: &Json) -> Value {
    if NUMERIC_SYSTEM.contains(&name) {
        if let Json::String(s) = v {
            if let Ok(i) = s.trim().parse::<i64>() {
                return Value::Int(i);
            }
        }
    }
    json_value(v)
}

/// ECS copies for a Windows event that already has its original names. Also sets
/// `logsource.product = windows` (the engine derives the service from `Channel`).
pub(crate) fn add_windows_ecs(ev: &mut Event, names: &mut Interner) {
    // Interned in sequence: the copies follow the record's own names in the same order from
    // record to record, so the names are found without hashing ([`Interner::intern_seq`]).
    ev.logsource.product = Some(names.intern_seq("windows"));
    // One pass finds the first value of every name read below (what `ev.get` would return).
    const WANTED: [&str; 13] = [
        "NewProcessName",
        "ParentProcessName",
        "Image",
        "ParentImage",
        "Computer",
        "EventID",
        "TargetUserName",
        "SubjectUserName",
        "User",
        "IpAddress",
        "SourceAddress",
        "SourceIp",
        "CommandLine",
    ];
    let mut at: [Option<usize>; 13] = [None; 13];
    for (i, (n, _)) in ev.fields().iter().enumerate() {
        if let Some(w) = WANTED.iter().position(|w| *w == n.as_str()) {
            at[w].get_or_insert(i);
        }
    }
    let fields = ev.fields();
    let get = |name: &str| -> Option<&Value> {
        let w = WANTED.iter().position(|w| *w == name)?;
        at[w].map(|i| &fields[i].1)
    };
    let mut add: Vec<(&'static str, Value)> = Vec::with_capacity(10);
    // Security 4688 names the image `NewProcessName`; Sysmon-style rules (and the benchmark
    // file) use `Image` / `ParentImage`.
    for (from, to) in [
        ("NewProcessName", "Image"),
        ("ParentProcessName", "ParentImage"),
    ] {
        if get(to).is_none() {
            if let Some(v) = get(from) {
                add.push((to, v.clone()));
            }
        }
    }
    if let Some(c) = get("Computer") {
        if !c.is_null() {
            add.push(("host.name", c.clone()));
        }
    }
    let code = get("EventID").and_then(|v| match v {
        Value::Int(i) => Some(*i),
        Value::Str(s) => s.trim().parse().ok(),
        _ => None,
    });
    if let Some(code) = code {
        add.push(("event.code", Value::Int(code)));
        match code {
            4624 => add.push(("event.outcome", Value::from("success"))),
            4625 => add.push(("event.outcome", Value::from("failure"))),
            _ => {}
        }
    }
    let user = ["TargetUserName", "SubjectUserName", "User"]
        .iter()
        .find_map(|k| nonempty_text(get(k)));
    if let Some(u) = user {
        add.push(("user.name", u));
    }
    let ip = ["IpAddress", "SourceAddress", "SourceIp"]
        .iter()
        .find_map(|k| nonempty_text(get(k)));
    if let Some(ip) = ip {
        add.push(("source.ip", ip));
    }
    if let Some(c) = nonempty_text(get("CommandLine")) {
        add.push(("process.command_line", c));
    }
    // `Image` as it was before the copies above (`NewProcessName` otherwise).
    if let Some(i) = ["Image", "NewProcessName"]
        .iter()
        .find_map(|k| nonempty_text(get(k)))
    {
        add.push(("process.executable", i));
    }
    for (n, v) in add {
        let n = names.intern_seq(n);
        ev.push(n, v);
    }
    crate::vendor::windows::normalize(ev, names);
}

/// A value as text unless it is empty or the Windows placeholder `-`: a string value that
/// needs no trimming is shared, not copied.
fn nonempty_text(v: Option<&Value>) -> Option<Value> {
    let v = v?;
    let t = v.to_text();
    let trimmed = t.trim();
    if trimmed.is_empty() || trimmed == "-" {
        return None;
    }
    Some(match v {
        Value::Str(s) if s.len() == trimmed.len() => Value::Str(s.clone()),
        _ => Value::from(trimmed),
    })
}

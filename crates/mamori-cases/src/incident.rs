//! The phase machine and every other change to an incident, as pure functions on [`Incident`].
//! The store loads an incident, applies one of these inside a transaction and writes it back,
//! so the rules live here once and are tested without a database.

use chrono::{DateTime, Utc};

use crate::classify::classify;
use crate::error::{Error, Result};
use crate::grouping::AlertInput;
use crate::model::{
    step, ActionEntry, Entity, HistoryAction, HistoryEntry, Incident, IncidentId, LinkedAlert,
    Note, Phase, Status, Step, Task,
};
use crate::playbook::Playbooks;

#[cfg(test)]
mod tests;

/// Who did something: required, short, one line.
const MAX_NAME: usize = 200;
/// Notes, lessons learned, reasons.
const MAX_TEXT: usize = 64 * 1024;

/// The actor recorded for changes made by the grouper itself.
pub const SYSTEM_ACTOR: &str = "mamori";

fn name<'a>(what: &str, s: &'a str) -> Result<&'a str> {
    let s = s.trim();
    if s.is_empty() {
        return Err(Error::Invalid(format!("{what} must not be empty")));
    }
    if s.len() > MAX_NAME || s.contains(['\n', '\r']) {
        return Err(Error::Invalid(format!(
            "{what} must be one line of at most {MAX_NAME} bytes"
        )));
    }
    Ok(s)
}

fn text<'a>(what: &str, s: &'a str) -> Result<&'a str> {
    let s = s.trim();
    if s.is_empty() {
        return Err(Error::Invalid(format!("{what} must not be empty")));
    }
    if s.len() > MAX_TEXT {
        return Err(Error::Invalid(format!(
            "{what} is longer than {MAX_TEXT} bytes"
        )));
    }
    Ok(s)
}

impl Incident {
    /// A new incident from its first alert, in detection & analysis with that phase's tasks.
    pub(crate) fn new(
        id: IncidentId,
        alert: &AlertInput,
        entities: Vec<Entity>,
        because: String,
        now: DateTime<Utc>,
        playbooks: &Playbooks,
    ) -> Incident {
        let about: Vec<&str> = entities.iter().take(2).map(|e| e.value.as_str()).collect();
        let titled = |t: &str| {
            if about.is_empty() {
                t.to_owned()
            } else {
                format!("{t} ({})", about.join(", "))
            }
        };
        let title = titled(&alert.title);
        let title_ja = alert
            .title_ja
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .map(titled);
        let kind = classify(&alert.rule_id.0, &alert.title, &alert.tags);
        let mut inc = Incident {
            id,
            title,
            title_ja,
            severity: alert.level,
            phase: Phase::DetectionAnalysis,
            status: Status::Open,
            assignee: None,
            created_at: now,
            updated_at: now,
            kind,
            entities: Vec::new(),
            alerts: Vec::new(),
            events: Vec::new(),
            tasks: Vec::new(),
            history: Vec::new(),
            notes: Vec::new(),
            actions: Vec::new(),
            evidence: Vec::new(),
            lessons_learned: None,
        };
        inc.log(
            now,
            SYSTEM_ACTOR,
            HistoryAction::Created,
            None,
            Some(kind.as_str()),
            Some(&because),
        );
        inc.link(alert, entities, because);
        inc.create_tasks(Phase::DetectionAnalysis, playbooks);
        inc
    }

    /// Adds a further alert: severity is the max of the alerts, the kind the most severe one.
    /// A kind change adds the new playbook's tasks for the current phase.
    pub(crate) fn add_alert(
        &mut self,
        alert: &AlertInput,
        entities: Vec<Entity>,
        because: String,
        now: DateTime<Utc>,
        playbooks: &Playbooks,
    ) {
        let why = format!("alert {} ({})", alert.alert_id, alert.title);
        self.log(
            now,
            SYSTEM_ACTOR,
            HistoryAction::AlertJoined,
            None,
            Some(&alert.alert_id.to_string()),
            Some(&because),
        );
        self.link(alert, entities, because);
        if alert.level > self.severity {
            let from = self.severity;
            self.severity = alert.level;
            self.log(
                now,
                SYSTEM_ACTOR,
                HistoryAction::Severity,
                Some(from.as_str()),
                Some(alert.level.as_str()),
                Some(&why),
            );
        }
        let kind = classify(&alert.rule_id.0, &alert.title, &alert.tags);
        if kind > self.kind {
            let from = self.kind;
            self.kind = kind;
            self.log(
                now,
                SYSTEM_ACTOR,
                HistoryAction::Kind,
                Some(from.as_str()),
                Some(kind.as_str()),
                Some(&why),
            );
            self.create_tasks(self.phase, playbooks);
        }
        self.updated_at = self.updated_at.max(now);
    }

    /// Events of an alert already linked that grew (a deduplicated alert counted again).
    pub(crate) fn add_events(&mut self, seqs: &[u64], now: DateTime<Utc>) -> bool {
        let before = self.events.len();
        for s in seqs {
            if !self.events.contains(s) {
                self.events.push(*s);
            }
        }
        let changed = self.events.len() != before;
        if changed {
            self.updated_at = self.updated_at.max(now);
        }
        changed
    }

    fn link(&mut self, alert: &AlertInput, entities: Vec<Entity>, because: String) {
        self.alerts.push(LinkedAlert {
            alert_id: alert.alert_id,
            rule_id: alert.rule_id.clone(),
            title: alert.title.clone(),
            title_ja: alert.title_ja.clone(),
            level: alert.level,
            time: alert.time,
            joined_because: because,
        });
        for e in entities {
            let known = self.entities.iter().any(|x| {
                x.field.eq_ignore_ascii_case(&e.field)
                    && x.value.to_lowercase() == e.value.to_lowercase()
            });
            if !known {
                self.entities.push(e);
            }
        }
        let mut seen: std::collections::HashSet<u64> = self.events.iter().copied().collect();
        for s in &alert.event_seqs {
            if seen.insert(*s) {
                self.events.push(*s);
            }
        }
    }

    /// Creates the playbook tasks of `phase`, skipping any still open with the same text (so
    /// re-entering a phase after going back starts a fresh round for what was done, without
    /// duplicating what was not).
    fn create_tasks(&mut self, phase: Phase, playbooks: &Playbooks) {
        let mut next = self.tasks.iter().map(|t| t.id).max().unwrap_or(0) + 1;
        for t in playbooks.tasks(self.kind, phase) {
            let open = self
                .tasks
                .iter()
                .any(|x| x.phase == phase && !x.done && x.text_en == t.en);
            if open {
                continue;
            }
            self.tasks.push(Task {
                id: next,
                phase,
                text_en: t.en.clone(),
                text_ja: t.ja.clone(),
                done: false,
                done_by: None,
                done_at: None,
            });
            next += 1;
        }
    }

    fn log(
        &mut self,
        at: DateTime<Utc>,
        by: &str,
        action: HistoryAction,
        from: Option<&str>,
        to: Option<&str>,
        why: Option<&str>,
    ) {
        self.history.push(HistoryEntry {
            at,
            by: by.to_owned(),
            action,
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            why: why.map(str::to_owned),
        });
        self.updated_at = self.updated_at.max(at);
    }

    /// Moves the incident to `to`. Forward (one or more steps) needs no reason; back needs one.
    /// Moving a closed incident back reopens it.
    pub(crate) fn set_phase(
        &mut self,
        to: Phase,
        by: &str,
        why: Option<&str>,
        now: DateTime<Utc>,
        playbooks: &Playbooks,
    ) -> Result<()> {
        let by = name("who", by)?;
        // A blank reason is no reason.
        let why = match why.map(str::trim) {
            None | Some("") => None,
            Some(w) => Some(text("reason", w)?),
        };
        let from = self.phase;
        let refuse = |reason: &str| Error::InvalidTransition {
            from,
            to,
            reason: reason.to_owned(),
        };
        match step(from, to) {
            Step::Same if self.status == Status::Closed => {
                return Err(refuse("the incident is closed; move it back to an earlier phase, with a reason, to reopen it"))
            }
            Step::Same => return Err(refuse("the incident is already in this phase")),
            Step::Back if why.is_none() => {
                return Err(refuse(
                    "going back to an earlier phase needs a reason (for example, re-infection after recovery)",
                ))
            }
            Step::Back | Step::Forward => {}
        }
        // Entering post-incident is allowed while open (the review is work of its own); only
        // `close` closes, and it needs lessons learned.
        if self.status == Status::Closed {
            self.status = Status::Open;
            self.log(
                now,
                by,
                HistoryAction::Reopened,
                Some(Status::Closed.as_str()),
                Some(Status::Open.as_str()),
                why,
            );
        }
        self.phase = to;
        self.log(
            now,
            by,
            HistoryAction::Phase,
            Some(from.as_str()),
            Some(to.as_str()),
            why,
        );
        self.create_tasks(to, playbooks);
        Ok(())
    }

    /// Closes the incident: lessons learned are required. From any phase (a false positive is
    /// closed from detection & analysis): the incident moves to post-incident on the way.
    pub(crate) fn close(
        &mut self,
        by: &str,
        lessons: &str,
        now: DateTime<Utc>,
        playbooks: &Playbooks,
    ) -> Result<()> {
        let by = name("who", by)?;
        if self.status == Status::Closed {
            return Err(Error::InvalidTransition {
                from: self.phase,
                to: Phase::PostIncident,
                reason: "the incident is already closed".into(),
            });
        }
        let lessons = text("lessons learned", lessons).map_err(|_| Error::InvalidTransition {
            from: self.phase,
            to: Phase::PostIncident,
            reason: format!(
                "closing needs lessons learned: 1 to {MAX_TEXT} bytes of text on what happened, \
                 what worked and what to change (for a false positive: why it fired and what was tuned)"
            ),
        })?;
        if self.phase != Phase::PostIncident {
            let from = self.phase;
            self.phase = Phase::PostIncident;
            self.log(
                now,
                by,
                HistoryAction::Phase,
                Some(from.as_str()),
                Some(Phase::PostIncident.as_str()),
                Some("closing"),
            );
            self.create_tasks(Phase::PostIncident, playbooks);
        }
        self.status = Status::Closed;
        self.lessons_learned = Some(lessons.to_owned());
        self.log(
            now,
            by,
            HistoryAction::Closed,
            Some(Status::Open.as_str()),
            Some(Status::Closed.as_str()),
            Some(lessons),
        );
        Ok(())
    }

    /// Sets or clears (`None`) the assignee. Unchanged is not recorded.
    pub(crate) fn assign(&mut self, who: Option<&str>, by: &str, now: DateTime<Utc>) -> Result<()> {
        let by = name("who", by)?;
        let who = who.map(|w| name("assignee", w)).transpose()?;
        if self.assignee.as_deref() == who {
            return Ok(());
        }
        let from = self.assignee.take();
        self.assignee = who.map(str::to_owned);
        let to = self.assignee.clone();
        self.log(
            now,
            by,
            HistoryAction::Assigned,
            from.as_deref(),
            to.as_deref(),
            None,
        );
        Ok(())
    }

    pub(crate) fn add_note(&mut self, by: &str, note: &str, now: DateTime<Utc>) -> Result<()> {
        let by = name("who", by)?;
        let note = text("note", note)?;
        self.notes.push(Note {
            at: now,
            by: by.to_owned(),
            text: note.to_owned(),
        });
        self.log(now, by, HistoryAction::Note, None, None, None);
        Ok(())
    }

    pub(crate) fn complete_task(&mut self, task: u32, by: &str, now: DateTime<Utc>) -> Result<()> {
        let by = name("who", by)?;
        let id = self.id;
        let t = self
            .tasks
            .iter_mut()
            .find(|t| t.id == task)
            .ok_or(Error::TaskNotFound { incident: id, task })?;
        if t.done {
            return Err(Error::Invalid(format!(
                "task {task} is already done (by {} at {})",
                t.done_by.as_deref().unwrap_or("?"),
                t.done_at.map(|t| t.to_rfc3339()).unwrap_or_default()
            )));
        }
        t.done = true;
        t.done_by = Some(by.to_owned());
        t.done_at = Some(now);
        let what = format!("task {task}: {}", t.text_en);
        self.log(now, by, HistoryAction::TaskDone, None, Some(&what), None);
        Ok(())
    }

    pub(crate) fn record_action(&mut self, entry: ActionEntry) -> Result<()> {
        let by = name("who", &entry.by)?.to_owned();
        let kind = name("action kind", &entry.kind)?.to_owned();
        let at = entry.at;
        self.actions.push(ActionEntry {
            by: by.clone(),
            kind: kind.clone(),
            ..entry
        });
        self.log(at, &by, HistoryAction::Action, None, Some(&kind), None);
        Ok(())
    }

    /// Adds a reference to sealed evidence; adding the same reference twice changes nothing.
    pub(crate) fn add_evidence(
        &mut self,
        reference: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let by = name("who", by)?;
        let reference = name("evidence reference", reference)?;
        if self.evidence.iter().any(|e| e == reference) {
            return Ok(());
        }
        self.evidence.push(reference.to_owned());
        self.log(
            now,
            by,
            HistoryAction::Evidence,
            None,
            Some(reference),
            None,
        );
        Ok(())
    }
}

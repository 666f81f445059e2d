//! `mamori incident`: the NIST SP 800-61 workflow from the terminal, on the server's incident
//! database (SQLite; safe to use while the server runs).

use crate::term::{out_raw, outln};
use std::path::Path;

use chrono::Utc;
use clap::{Args, Subcommand};
use mamori_cases::{CaseStore, Incident, IncidentFilter, IncidentId, Phase, Status};

use crate::exit;
use crate::serve::DataDirArgs;

#[derive(Subcommand, Debug)]
pub(crate) enum IncidentCmd {
    /// List incidents, newest activity first.
    List {
        /// Only `open` or `closed` ones.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Show one incident: alerts and why they joined, tasks, history, notes, actions.
    Show {
        id: i64,
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Move to a phase: detection-analysis, containment, eradication, recovery, post-incident.
    Phase {
        id: i64,
        phase: String,
        /// Why (required when going back a phase).
        #[arg(long)]
        why: Option<String>,
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Assign to someone (or `-` to unassign).
    Assign {
        id: i64,
        assignee: String,
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Add a note.
    Note {
        id: i64,
        text: String,
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Check off a playbook task.
    Done {
        id: i64,
        task: u32,
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        dir: DataDirArgs,
    },
    /// Close with lessons learned.
    Close {
        id: i64,
        #[arg(long, required = true)]
        lessons: String,
        #[command(flatten)]
        who: Who,
        #[command(flatten)]
        dir: DataDirArgs,
    },
}

#[derive(Args, Debug)]
pub(crate) struct Output {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Language of the text output: en or ja.
    #[arg(long, default_value = "en")]
    lang: String,
}

#[derive(Args, Debug)]
pub(crate) struct Who {
    /// Who is acting (recorded in the history); default: $USER.
    #[arg(long)]
    by: Option<String>,
}

impl Who {
    fn name(&self) -> String {
        self.by
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "cli".into())
    }
}

fn open(dir: &DataDirArgs) -> anyhow::Result<CaseStore> {
    let d = dir.resolve()?;
    let p = d.join("incidents.db");
    if !p.exists() {
        anyhow::bail!(
            "no incident database at {} (has `mamori serve` run with this data directory?)",
            p.display()
        );
    }
    Ok(CaseStore::open(Path::new(&p))?)
}

fn print(inc: &Incident, out: &Output) {
    if out.json {
        out_raw!("{}", serde_json::to_string_pretty(inc).unwrap_or_default());
        return;
    }
    let l = out.lang.as_str();
    let ja = l == "ja";
    outln!(
        "#{} {} [{}] {} — {}",
        inc.id.0,
        inc.title,
        if ja {
            inc.severity.as_str_ja()
        } else {
            inc.severity.as_str()
        },
        inc.kind.label(l),
        inc.phase.label(l)
    );
    outln!(
        "{}: {}   {}: {}",
        if ja { "状態" } else { "status" },
        inc.status.label(l),
        if ja { "担当" } else { "assignee" },
        inc.assignee.as_deref().unwrap_or("-")
    );
    if !inc.entities.is_empty() {
        let e: Vec<String> = inc
            .entities
            .iter()
            .map(|e| format!("{}={}", e.field, e.value))
            .collect();
        outln!(
            "{}: {}",
            if ja { "関係する対象" } else { "entities" },
            e.join(", ")
        );
    }
    outln!("{}:", if ja { "アラート" } else { "alerts" });
    for a in &inc.alerts {
        outln!(
            "  #{} {} [{}] — {}",
            a.alert_id,
            a.title,
            a.level,
            a.joined_because
        );
    }
    outln!("{}:", if ja { "タスク" } else { "tasks" });
    for t in &inc.tasks {
        outln!(
            "  [{}] {:>3} ({}) {}",
            if t.done { "x" } else { " " },
            t.id,
            t.phase.label(l),
            if ja { &t.text_ja } else { &t.text_en }
        );
    }
    if !inc.actions.is_empty() {
        outln!("{}:", if ja { "対応記録" } else { "actions" });
        for a in &inc.actions {
            outln!("  {} {} {} {}", a.at.to_rfc3339(), a.by, a.kind, a.detail);
        }
    }
    if !inc.notes.is_empty() {
        outln!("{}:", if ja { "メモ" } else { "notes" });
        for n in &inc.notes {
            outln!("  {} {}: {}", n.at.to_rfc3339(), n.by, n.text);
        }
    }
    outln!("{}:", if ja { "履歴" } else { "history" });
    for h in &inc.history {
        outln!(
            "  {} {} {} {} {} {}",
            h.at.to_rfc3339(),
            h.by,
            h.action.as_str(),
            h.from.as_deref().unwrap_or(""),
            h.to.as_deref().unwrap_or(""),
            h.why.as_deref().unwrap_or("")
        );
    }
    if let Some(ll) = &inc.lessons_learned {
        outln!("{}: {ll}", if ja { "教訓" } else { "lessons learned" });
    }
}

pub(crate) fn run(cmd: IncidentCmd) -> anyhow::Result<i32> {
    let now = Utc::now();
    match cmd {
        IncidentCmd::List { status, out, dir } => {
            let cases = open(&dir)?;
            let status = match status.as_deref() {
                None => None,
                Some(s) => Some(
                    Status::parse(s)
                        .ok_or_else(|| anyhow::anyhow!("unknown status `{s}` (open, closed)"))?,
                ),
            };
            let f = IncidentFilter {
                status,
                ..IncidentFilter::default()
            };
            let list = cases.list(&f)?;
            if out.json {
                out_raw!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for i in &list {
                    outln!(
                        "#{}\t{}\t{}\t{}\t{}\t{} alerts\t{} open tasks",
                        i.id.0,
                        i.severity,
                        i.phase.label(&out.lang),
                        i.kind.label(&out.lang),
                        i.title,
                        i.alert_count,
                        i.open_tasks
                    );
                }
            }
            Ok(exit::OK)
        }
        IncidentCmd::Show { id, out, dir } => {
            print(&open(&dir)?.get(IncidentId(id))?, &out);
            Ok(exit::OK)
        }
        IncidentCmd::Phase {
            id,
            phase,
            why,
            who,
            dir,
        } => {
            let to = Phase::parse(&phase).ok_or_else(|| {
                anyhow::anyhow!("unknown phase `{phase}` (detection-analysis, containment, eradication, recovery, post-incident)")
            })?;
            let inc =
                open(&dir)?.set_phase(IncidentId(id), to, &who.name(), why.as_deref(), now)?;
            eprintln!("#{} is now in {}", inc.id.0, inc.phase.label("en"));
            Ok(exit::OK)
        }
        IncidentCmd::Assign {
            id,
            assignee,
            who,
            dir,
        } => {
            let a = (assignee != "-").then_some(assignee.as_str());
            open(&dir)?.assign(IncidentId(id), a, &who.name(), now)?;
            Ok(exit::OK)
        }
        IncidentCmd::Note { id, text, who, dir } => {
            open(&dir)?.add_note(IncidentId(id), &who.name(), &text, now)?;
            Ok(exit::OK)
        }
        IncidentCmd::Done { id, task, who, dir } => {
            open(&dir)?.complete_task(IncidentId(id), task, &who.name(), now)?;
            Ok(exit::OK)
        }
        IncidentCmd::Close {
            id,
            lessons,
            who,
            dir,
        } => {
            open(&dir)?.close(IncidentId(id), &who.name(), &lessons, now)?;
            Ok(exit::OK)
        }
    }
}

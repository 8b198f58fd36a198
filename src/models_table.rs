//! `cfgate models`: the gateway's model list as a table a person can scan.

use std::process::ExitCode;

use cfgate::config::Layer;
use cfgate::gateway::models::ModelInfo;
use cfgate::protocol::ModelsParams;
use cfgate::service::Service;

use crate::answer_out::print_text;

pub async fn print(service: &Service, json: bool) -> ExitCode {
    let result = match service
        .models(&Layer::default(), ModelsParams { refresh: true })
        .await
    {
        Ok(result) => result,
        Err(e) => {
            eprintln!("cfgate: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        let text = serde_json::to_string_pretty(&result).unwrap_or_default();
        print_text(&format!("{text}\n"));
        return ExitCode::SUCCESS;
    }
    print_text(&table(&result.models));
    ExitCode::SUCCESS
}

/// Columns: id, owner, context window, function calling, price in and out (as the source
/// gives it); `-` where the source does not say.
pub fn table(models: &[ModelInfo]) -> String {
    let dash = || "-".to_string();
    let rows: Vec<[String; 6]> = models
        .iter()
        .map(|m| {
            [
                m.id.clone(),
                m.owned_by.clone().unwrap_or_else(dash),
                m.context_window.map(|c| c.to_string()).unwrap_or_else(dash),
                m.function_calling
                    .map(|f| if f { "yes" } else { "no" }.to_string())
                    .unwrap_or_else(dash),
                m.cost_in.map(|c| c.to_string()).unwrap_or_else(dash),
                m.cost_out.map(|c| c.to_string()).unwrap_or_else(dash),
            ]
        })
        .collect();
    let header = ["MODEL", "OWNER", "CONTEXT", "TOOLS", "COST IN", "COST OUT"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

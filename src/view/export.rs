//! `exp view --export DIR`: the server's pages as files, at the same paths, for a bucket or an
//! intranet page. Every commit's run page, every trial's items under every filter (read in two
//! passes per trial: counts, then pages as they fill), and each commit compared with its parent.
//! Search needs the server; the exported pages leave its box out.
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::items::{self, Filter, ItemRow, ItemsPage, PAGE_SIZE};
use super::{Error, Result, Site, html, pages, paths, read};
use crate::progress::Progress;
use crate::store::{ObjectId, Repo};

/// What an export wrote.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Exported {
    pub dir: PathBuf,
    pub pages: u64,
    pub bytes: u64,
    pub runs: u64,
}

struct Writer {
    dir: PathBuf,
    done: Exported,
}

impl Writer {
    fn write(&mut self, rel: &str, bytes: &[u8]) -> Result<()> {
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|source| Error::Write { path: parent.to_path_buf(), source })?;
        }
        std::fs::write(&path, bytes).map_err(|source| Error::Write { path, source })?;
        self.done.pages += u64::from(rel.ends_with(".html"));
        self.done.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Writes the page the server shows at `rel`; a page that would be an error is an error.
    fn page(&mut self, site: &Site, rel: &str) -> Result<()> {
        let page = site.get(rel, "");
        if page.status != 200 {
            return Err(Error::BadFile {
                path: rel.to_string(),
                problem: format!("the page answers {}", page.status),
            });
        }
        self.write(rel, &page.body)
    }
}

/// Writes the whole site into `dir` (created if needed; files already there are replaced).
pub fn export(repo: Repo, dir: &Path, progress: &dyn Progress) -> Result<Exported> {
    let site = Site::for_export(repo);
    let mut w =
        Writer { dir: dir.to_path_buf(), done: Exported { dir: dir.into(), ..Default::default() } };
    for (name, bytes) in html::assets() {
        w.write(&format!("assets/{name}"), bytes)?;
    }
    w.page(&site, "index.html")?;
    let history = read::history(&site.repo)?;
    progress.start("runs", history.len() as u64, false);
    for entry in &history {
        w.page(&site, &paths::run(&entry.id))?;
        let run = read::run(&site.repo, &entry.id)?;
        for t in &run.files.trials {
            trial_pages(&mut w, &site, &run, &t.slug)?;
        }
        if let Some(parent) = entry.commit.parents.first() {
            compare_pages(&mut w, &site, parent, &entry.id)?;
        }
        w.done.runs += 1;
        progress.advance(1);
    }
    progress.finish();
    Ok(w.done)
}

/// Every filter's pages of one trial: one pass counts, a second fills the pages in order.
fn trial_pages(w: &mut Writer, site: &Site, run: &read::Run, slug: &str) -> Result<()> {
    let files = run.trial(slug)?;
    let counted = items::page(&site.repo, &run.id, files, Filter::All, 1, "")?;
    let counts = counted.counts;
    let has_scores = counted.has_scores;
    let mut pending: Vec<(Vec<ItemRow>, u64)> =
        Filter::EVERY.iter().map(|_| (Vec::new(), 1)).collect();
    let mut failed = None;
    let flush = |w: &mut Writer, f: Filter, rows: Vec<ItemRow>, page: u64| -> Result<()> {
        let items = ItemsPage { rows, counts, has_scores };
        let html = pages::trial_html(site, run, slug, f, page, "", &items)?;
        w.write(&paths::trial(&run.id, slug, f, page), html.as_bytes())
    };
    items::scan(&site.repo, &run.id, files, |row| {
        for (i, f) in Filter::EVERY.into_iter().enumerate() {
            if !f.matches(&row) {
                continue;
            }
            let (rows, page) = &mut pending[i];
            rows.push(row.clone());
            if rows.len() as u64 == PAGE_SIZE {
                if let Err(e) = flush(w, f, std::mem::take(rows), *page) {
                    failed = Some(e);
                    return ControlFlow::Break(());
                }
                *page += 1;
            }
        }
        ControlFlow::Continue(())
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    for (i, f) in Filter::EVERY.into_iter().enumerate() {
        let (rows, page) = std::mem::take(&mut pending[i]);
        // The last, partly filled page; and page 1 of a filter nothing matches.
        if !rows.is_empty() || page == 1 {
            flush(w, f, rows, page)?;
        }
    }
    Ok(())
}

/// Pages of `b` compared with `a`, until the flipped items run out.
fn compare_pages(w: &mut Writer, site: &Site, a: &ObjectId, b: &ObjectId) -> Result<()> {
    let first = paths::compare(a, b, 1);
    let page = site.get(&first, "");
    if page.status == 404 {
        // The parent is not in this store (a shallow clone): nothing to compare with.
        return Ok(());
    }
    w.write(&first, &page.body)?;
    let mut n = 2;
    loop {
        let rel = paths::compare(a, b, n);
        let page = site.get(&rel, "");
        if page.status != 200 {
            return Ok(());
        }
        w.write(&rel, &page.body)?;
        n += 1;
    }
}

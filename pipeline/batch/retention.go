package batch

import "time"

// sweeper deletes what Retention no longer keeps, at start and every SweepEvery.
func (m *Manager) sweeper() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.SweepEvery)
	defer t.Stop()
	for {
		m.sweep(time.Now())
		select {
		case <-m.quit:
			return
		case <-t.C:
		}
	}
}

// sweep deletes the batches that ended more than Retention before now, with their output and error files,
// and every file created before then that no unfinished batch reads.
func (m *Manager) sweep(now time.Time) {
	if m.cfg.Retention <= 0 {
		return
	}
	cutoff := now.Add(-m.cfg.Retention).UnixMilli()
	recs, err := m.store.BatchesIn(finishedStatuses...)
	if err != nil {
		m.log.Warn("batch retention: cannot list finished batches", "err", err)
		return
	}
	var batches, files int
	for i := range recs {
		rec := &recs[i]
		if max(rec.CompletedAt, rec.FailedAt, rec.CancelledAt, rec.ExpiredAt) >= cutoff {
			continue
		}
		for _, id := range []string{rec.OutputFileID, rec.ErrorFileID} {
			if id == "" {
				continue
			}
			f, found, err := m.store.File(id)
			if err == nil && found {
				err = m.deleteFile(&f)
				files++
			}
			if err != nil {
				m.log.Warn("batch retention: cannot delete a file", "file", id, "err", err)
			}
		}
		if err := m.store.DeleteBatch(rec.ID); err != nil {
			m.log.Warn("batch retention: cannot delete a batch", "batch", rec.ID, "err", err)
			continue
		}
		batches++
	}
	old, err := m.store.FilesBefore(cutoff)
	if err != nil {
		m.log.Warn("batch retention: cannot list old files", "err", err)
		return
	}
	for i := range old {
		in, err := m.store.FileInUse(old[i].ID, unfinishedStatuses...)
		if err == nil && in == "" {
			err = m.deleteFile(&old[i])
			files++
		}
		if err != nil {
			m.log.Warn("batch retention: cannot delete a file", "file", old[i].ID, "err", err)
		}
	}
	if batches > 0 || files > 0 {
		m.log.Info("batch retention: deleted what ended before the retention period", "batches", batches, "files", files,
			"batch_retention_days", m.cfg.Retention.Hours()/24)
	}
}

package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"llmcache/db"
)

// cmdBatches lists the Batch API's batches, newest first, with their progress as last recorded (a running
// proxy records it every flush_interval_ms). Read-only: safe beside a running proxy.
func cmdBatches(path string, stdout io.Writer) error {
	if err := mustExist(path); err != nil {
		return err
	}
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "BATCH\tSTATUS\tENDPOINT\tDONE\tCOMPLETED\tFAILED\tTOTAL\tCREATED")
	n := 0
	err := db.ReadBatches(path, func(r *db.BatchRecord) {
		n++
		done := "-"
		if r.Total > 0 {
			done = fmt.Sprintf("%.1f%%", 100*float64(r.Completed+r.Failed)/float64(r.Total))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", r.ID, r.Status, r.Endpoint, done, r.Completed, r.Failed, r.Total,
			time.UnixMilli(r.CreatedAt).UTC().Format("2006-01-02 15:04:05"))
	})
	if err != nil {
		return err
	}
	if n == 0 {
		fmt.Fprintln(w, "(no batches)")
	}
	return w.Flush()
}

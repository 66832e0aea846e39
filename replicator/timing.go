package replicator

import (
	"log/slog"
	"time"
)

// batchTimes splits where a batch's time went, for the debug log of each
// applied batch or sub-batch (bench/catchup reads them to tell the master's
// reads from the slave's apply and the commit's round trips).
type batchTimes struct {
	start   time.Time
	summary time.Duration // the range's summary (sub-batches: once per range)
	read    time.Duration // waiting for the master's events (query and rows)
	apply   time.Duration // chunks built (grouped, joined) and applied on the slave
	slave   time.Duration // of which waiting for replica.apply on the slave
	fence   time.Duration // the master's flush position read, or its synchronous heartbeat
	fenced  string        // how the fence was passed (see fence)
	commit  time.Duration // position, PREPARE, ack and COMMIT PREPARED (or COMMIT and ack)
}

// since adds the time elapsed since t to *d and returns now.
func since(d *time.Duration, t time.Time) time.Time {
	now := time.Now()
	*d += now.Sub(t)
	return now
}

// attrs returns the times as log attributes, in milliseconds.
func (b *batchTimes) attrs() []any {
	ms := func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
	return []any{slog.String("took", ms(time.Since(b.start))), slog.String("summary", ms(b.summary)), slog.String("read", ms(b.read)),
		slog.String("apply", ms(b.apply)), slog.String("slave_apply", ms(b.slave)), slog.String("fence", ms(b.fence)), slog.String("fenced", b.fenced), slog.String("commit", ms(b.commit))}
}

// Command apply measures how fast a backlog drains: ROWS single-row INSERT
// transactions are made on the master (pgbench, 4 clients) while nothing
// consumes them, then each consumer is started in turn and timed from its
// start until the slave holds every row:
//
//	goreplica_2pc  `goreplica run` with two_phase = true
//	goreplica_2pc_metrics  the same with a [metrics] listener scraped every
//	               second while it drains (the cost of the metrics endpoint)
//	goreplica_1pc  `goreplica run` with two_phase = false
//	native         a native logical replication subscription, enabled
//
// all on the same two durable servers, in a rotating order. The daemon's
// peak resident memory (VmHWM) and CPU time are read from /proc; a last
// round with a BIG backlog shows whether memory depends on the backlog.
//
// Knobs (environment): ROWS [100000], RUNS [3] rounds of ROWS, BIG [300000]
// rows of the last round (0: none), CLIENTS [4] pgbench clients for the
// burst, BURST_SYNC [off]: synchronous_commit of the burst's sessions only
// (the backlog is the same either way; off makes it 5x quicker to build
// here). Every consumer commits with the servers' defaults.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/goreplica/goreplica/bench/internal/rig"
)

type drain struct {
	round    int
	backlog  int
	consumer string
	secs     float64
	rate     float64
	rssKB    int64
	cpu      time.Duration
	scrapes  int // successful scrapes of /metrics during the drain
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/apply: "+err.Error())
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	var k rig.Knobs
	rows := k.Int("ROWS", 100000)
	runs := k.Int("RUNS", 3)
	big := 300000
	if v := os.Getenv("BIG"); v == "0" {
		big = 0
		k.String("BIG", "")
	} else {
		big = k.Int("BIG", big)
	}
	clients := k.Int("CLIENTS", 4)
	burstSync := k.String("BURST_SYNC", "off")
	command := k.Command("./bench/apply")

	p, err := rig.StartPair(ctx, rig.PairOptions{
		Slaves: []rig.Slave{{Name: "goreplica_2pc", TwoPhase: true}, {Name: "goreplica_2pc_metrics", TwoPhase: true}, {Name: "goreplica_1pc", TwoPhase: false}},
		Native: "native",
	})
	if err != nil {
		return err
	}
	defer p.Close()
	metricsAddr, err := addMetrics(p, "goreplica_2pc_metrics")
	if err != nil {
		return err
	}
	dir, cleanup, err := rig.Scripts()
	if err != nil {
		return err
	}
	defer cleanup()

	backlogs := []int{}
	for range runs {
		backlogs = append(backlogs, rows)
	}
	if big > 0 {
		backlogs = append(backlogs, big)
	}
	consumers := []string{"goreplica_2pc", "goreplica_2pc_metrics", "goreplica_1pc", "native"}
	var drains []drain
	var burstTPS []string
	for round, n := range backlogs {
		after, err := rig.MaxID(ctx, p.M)
		if err != nil {
			return err
		}
		rig.Logf("round %d: burst of %d single-row INSERT transactions, %d clients, nothing consuming", round+1, n, clients)
		res, err := rig.Pgbench{Dir: dir, Script: "insert.sql", DB: rig.MasterDB, Clients: clients,
			Transactions: n / clients, Sync: burstSync}.Run(ctx, p.Master)
		if err != nil {
			return err
		}
		burstTPS = append(burstTPS, fmt.Sprintf("%.0f", res.TPS))
		maxID, err := rig.MaxID(ctx, p.M)
		if err != nil {
			return err
		}
		want := int64(n / clients * clients)
		r := round % len(consumers)
		order := append(append([]string(nil), consumers[r:]...), consumers[:r]...)
		for _, c := range order {
			if err := rig.Exec(ctx, p.M, `CHECKPOINT`); err != nil {
				return err
			}
			if err := rig.Exec(ctx, p.S[c], `CHECKPOINT`); err != nil {
				return err
			}
			d := drain{round: round + 1, backlog: int(want), consumer: c}
			if c == "native" {
				err = drainNative(ctx, p, after, maxID, want, &d)
			} else {
				scrape := ""
				if c == "goreplica_2pc_metrics" {
					scrape = "http://" + metricsAddr + "/metrics"
				}
				err = drainGoreplica(ctx, p, c, scrape, after, maxID, want, &d)
			}
			if err != nil {
				return err
			}
			drains = append(drains, d)
			rig.Logf("round %d %-14s %d rows in %.2fs: %.0f rows/s  peak RSS %d kB  cpu %v  scrapes %d", d.round, c, want, d.secs, d.rate, d.rssKB, d.cpu, d.scrapes)
		}
		// Purge what both goreplica slaves have applied, as the daemon does
		// once a minute, so that every round reads a log of the same size.
		if err := rig.Exec(ctx, p.M,
			`DELETE FROM replica.replica_log WHERE txid < (SELECT min(pg_snapshot_xmin(acked_snapshot)) FROM replica.slaves)`,
			`VACUUM ANALYZE replica.replica_log`, `VACUUM ANALYZE test`); err != nil {
			return err
		}
		for _, c := range consumers {
			if err := rig.Exec(ctx, p.S[c], `VACUUM ANALYZE test`); err != nil {
				return err
			}
		}
	}
	report(command, rows, runs, big, clients, burstSync, burstTPS, drains)
	return nil
}

// addMetrics adds a [metrics] section on a free port to the configuration
// of slave and returns its address.
func addMetrics(p *rig.Pair, slave string) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	l.Close()
	for _, s := range p.Slaves {
		if s.Name == slave {
			f, err := os.OpenFile(s.Config, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return "", err
			}
			_, err = fmt.Fprintf(f, "\n[metrics]\nlisten = %q\n", addr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			return addr, err
		}
	}
	return "", fmt.Errorf("no slave %s", slave)
}

// scrapeEverySecond GETs url every second until ctx ends, as a Prometheus
// server with scrape_interval 1s would; it returns the number of
// successful scrapes.
func scrapeEverySecond(ctx context.Context, url string) int {
	n := 0
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return n
		case <-t.C:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return n
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				n++
			}
		}
	}
}

func drainGoreplica(ctx context.Context, p *rig.Pair, slave, scrape string, after, maxID, want int64, d *drain) error {
	cfg := ""
	for _, s := range p.Slaves {
		if s.Name == slave {
			cfg = s.Config
		}
	}
	logPath := filepath.Join(p.Dir, fmt.Sprintf("%s-round%d.log", slave, d.round))
	t0 := time.Now()
	dm, err := rig.StartDaemon(p.Bin, cfg, logPath)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	scrapes := make(chan int, 1)
	sctx, stopScrape := context.WithCancel(wctx)
	if scrape != "" {
		go func() { scrapes <- scrapeEverySecond(sctx, scrape) }()
	} else {
		scrapes <- 0
	}
	t1, err := rig.WaitRows(wctx, p.S[slave], after, maxID, want, 10*time.Millisecond)
	stopScrape()
	d.scrapes = <-scrapes
	u, uerr := dm.Usage()
	serr := dm.Stop()
	if err != nil {
		return fmt.Errorf("%s: %w\ndaemon log:\n%s", slave, err, dm.Tail(3000))
	}
	if uerr != nil {
		return uerr
	}
	if serr != nil {
		return serr
	}
	d.secs = t1.Sub(t0).Seconds()
	d.rate = float64(want) / d.secs
	d.rssKB, d.cpu = u.PeakRSSKB, u.CPU
	return nil
}

func drainNative(ctx context.Context, p *rig.Pair, after, maxID, want int64, d *drain) error {
	t0 := time.Now()
	if err := p.SetNative(ctx, true); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	t1, err := rig.WaitRows(wctx, p.S["native"], after, maxID, want, 10*time.Millisecond)
	if err != nil {
		return fmt.Errorf("native: %w", err)
	}
	d.secs = t1.Sub(t0).Seconds()
	d.rate = float64(want) / d.secs
	return p.SetNative(ctx, false)
}

func report(command string, rows, runs, big, clients int, burstSync string, burstTPS []string, drains []drain) {
	fmt.Println()
	rig.Header("apply throughput: drain of a backlog of single-row INSERT transactions", command)
	fmt.Printf("# backlog: %d rows x %d rounds", rows, runs)
	if big > 0 {
		fmt.Printf(" + one round of %d", big)
	}
	fmt.Printf("; burst by pgbench, %d clients, synchronous_commit=%s for the burst only (tps per round: %s)\n",
		clients, burstSync, strings.Join(burstTPS, " "))
	fmt.Println("# timed from the consumer's start (daemon exec / ALTER SUBSCRIPTION ENABLE) until the slave's count(*) has every row")
	fmt.Println("# targets (DESIGN.md): >= 35000 rows/s (2x Londiste's 17500) and >= 0.6x native in the same run; memory bounded whatever the backlog")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "backlog\tconsumer\tmedian rows/s\truns (rows/s)\tvs native\tvs Londiste 17500\tpeak RSS MB\tdaemon CPU s\t")
	sizes := []int{}
	for _, d := range drains {
		if !slices.Contains(sizes, d.backlog) {
			sizes = append(sizes, d.backlog)
		}
	}
	for _, size := range sizes {
		med := map[string]float64{}
		for _, c := range []string{"native", "goreplica_2pc", "goreplica_2pc_metrics", "goreplica_1pc"} {
			var xs []float64
			var runs []string
			var rss int64
			var cpu []float64
			for _, d := range drains {
				if d.backlog == size && d.consumer == c {
					xs = append(xs, d.rate)
					runs = append(runs, fmt.Sprintf("%.0f", d.rate))
					rss = max(rss, d.rssKB)
					cpu = append(cpu, d.cpu.Seconds())
				}
			}
			if len(xs) == 0 {
				continue
			}
			m := rig.Median(xs)
			med[c] = m
			vsNative := "-"
			if c != "native" && med["native"] > 0 {
				vsNative = fmt.Sprintf("%.2fx", m/med["native"])
			}
			rssS, cpuS := "-", "-"
			if c != "native" {
				rssS = fmt.Sprintf("%.1f", float64(rss)/1024)
				cpuS = fmt.Sprintf("%.2f", rig.Median(cpu))
			}
			fmt.Fprintf(tw, "%d\t%s\t%.0f\t%s\t%s\t%.2fx\t%s\t%s\t\n", size, c, m, strings.Join(runs, " "), vsNative, m/17500, rssS, cpuS)
		}
	}
	tw.Flush()
}

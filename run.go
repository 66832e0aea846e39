package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/goreplica/goreplica/config"
	"github.com/goreplica/goreplica/notify"
	"github.com/goreplica/goreplica/replicator"
)

func init() {
	verbs["run"] = verb{"run the replication daemon in the foreground", runRun}
}

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("run", stderr)
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	cfg, err := config.Load(config.Resolve(*c))
	if err != nil {
		return err
	}
	logger := newLogger(stderr)
	return daemon(ctx, cfg, logger)
}

// daemon replicates until ctx is cancelled. With a [mail] section it mails
// on start, stop and every alert the replicator raises.
func daemon(ctx context.Context, cfg *config.Config, logger *slog.Logger) (err error) {
	opts := replicatorOptions(cfg)
	opts.Logger = logger
	m, err := startMailer(cfg, logger)
	if err != nil {
		return err
	}
	if m != nil {
		opts.Alerter = mailAlerter{m: m, configPath: cfg.Path}
		opts.LagAlert = cfg.Mail.LagAlert.Duration
	}
	defer func() { stopMailer(m, err, logger) }()
	l, err := notify.Listen(cfg.Master.DSN.Reveal(), logger)
	if err != nil {
		return err
	}
	defer l.Close()
	opts.Waker = l
	r, err := replicator.New(opts)
	if err != nil {
		return err
	}
	defer r.Close()
	logger.Info("goreplica starting", "version", version, "master", cfg.Master.Name,
		"slaves", strings.Join(slaveNames(cfg), ","), "config", cfg.Path)
	go func() {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := l.Check(cctx, cfg.Master.DSN.Reveal(), 5*time.Second); err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
			logger.Warn("notifications", "error", err)
		}
	}()
	err = r.Run(ctx)
	logger.Info("goreplica stopped")
	return err
}

// replicatorOptions translates the configuration for package replicator.
func replicatorOptions(cfg *config.Config) replicator.Options {
	o := replicator.Options{
		Master:        replicator.Node{Name: cfg.Master.Name, DSN: cfg.Master.DSN.Reveal()},
		Tables:        cfg.Replicate.Tables,
		Exclude:       cfg.Replicate.Exclude,
		PollInterval:  cfg.Replicate.PollInterval.Duration,
		PurgeInterval: cfg.Replicate.PurgeInterval.Duration,
		MaxBackoff:    cfg.Replicate.MaxBackoff.Duration,
	}
	for _, s := range cfg.Slaves {
		o.Slaves = append(o.Slaves, replicator.Node{Name: s.Name, DSN: s.DSN.Reveal(), TwoPhase: s.UsesTwoPhase()})
	}
	return o
}

func slaveNames(cfg *config.Config) []string {
	var out []string
	for _, s := range cfg.Slaves {
		out = append(out, s.Name)
	}
	return out
}

// newLogger returns the daemon's logger: text on stderr, level from
// $GOREPLICA_LOG_LEVEL (debug, info, warn, error; default info).
func newLogger(w io.Writer) *slog.Logger {
	var level slog.Level
	if v := os.Getenv("GOREPLICA_LOG_LEVEL"); v != "" {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			fmt.Fprintf(w, "goreplica: GOREPLICA_LOG_LEVEL=%q ignored: %v\n", v, err)
		}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

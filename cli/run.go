package cli

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
	"github.com/goreplica/goreplica/logging"
	"github.com/goreplica/goreplica/mailer"
	"github.com/goreplica/goreplica/metrics"
	"github.com/goreplica/goreplica/notify"
	"github.com/goreplica/goreplica/replicator"
	"github.com/goreplica/goreplica/service"
)

func (c *CLI) runRun(ctx context.Context, args []string) error {
	fs := c.flags()
	var paths configList
	fs.Var(&paths, "c", "configuration `FILE` (default $GOREPLICA_CONFIG, then "+config.DefaultPath()+"); repeat it to run one daemon per configuration in this process, e.g. both directions of two sites that write")
	name := fs.String("service", "", "run under the service manager as service `NAME` (the command line 'goreplica service install' registers has it)")
	if err := c.parse(fs, args, 0); err != nil {
		return err
	}
	stderr := c.Stderr
	if len(paths) == 0 {
		paths = configList{""}
	}
	run := func(ctx context.Context, ready func()) error {
		if len(paths) > 1 {
			return c.daemons(ctx, paths, stderr, *name, ready)
		}
		cfg, err := config.Load(config.Resolve(paths[0]))
		if err != nil {
			return err
		}
		logger, closeLog, err := newLogger(cfg.Log, stderr, *name)
		if err != nil {
			return err
		}
		defer closeLog()
		return c.daemon(ctx, cfg, logger, ready)
	}
	if *name == "" {
		return run(ctx, func() {})
	}
	if err := service.CheckName(*name); err != nil {
		return UsageError{Verb: "run", Msg: err.Error()}
	}
	return service.Run(ctx, *name, run)
}

// daemon replicates until ctx is cancelled. With a [mail] section it mails
// on start, stop and every alert the replicator raises. It calls ready once
// the replicator runs.
func (c *CLI) daemon(ctx context.Context, cfg *config.Config, logger *slog.Logger, ready func()) (err error) {
	opts := replicatorOptions(cfg)
	opts.Logger = logger
	m, err := startMailer(cfg, logger, c.Version)
	if err != nil {
		return err
	}
	if m != nil {
		opts.Alerter = mailAlerter{m: m, configPath: cfg.Path}
		opts.LagAlert = cfg.Mail.LagAlert.Duration
	}
	defer func() { stopMailer(m, err, logger) }()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	problems := replicator.CheckPooling(pctx, opts)
	cancel()
	if len(problems) > 0 {
		return errors.Join(problems...)
	}
	if cfg.Metrics != nil {
		stop, err := startMetrics(cfg, &opts, m, logger)
		if err != nil {
			return err
		}
		defer stop()
	}
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
	logger.Info("goreplica starting", "version", c.Version, "master", cfg.Master.Name,
		"slaves", strings.Join(slaveNames(cfg), ","), "config", cfg.Path)
	go func() {
		// After the workers' first connections (the check opens two of
		// its own on the master): a start after an outage is waited for.
		select {
		case <-ctx.Done():
			return
		case <-time.After(notifyCheckAfter):
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := l.Check(cctx, cfg.Master.DSN.Reveal(), 5*time.Second)
		switch {
		case err == nil:
			logger.Info("notifications from the master arrive")
		case !errors.Is(err, context.Canceled) && ctx.Err() == nil:
			logger.Warn("notifications", "error", err)
		}
	}()
	ready()
	err = r.Run(ctx)
	logger.Info("goreplica stopped")
	return err
}

// notifyCheckAfter is how long after its start the daemon checks that
// notifications from the master arrive.
const notifyCheckAfter = time.Second

// replicatorOptions translates the configuration for package replicator.
func replicatorOptions(cfg *config.Config) replicator.Options {
	o := replicator.Options{
		Master:        replicator.Node{Name: cfg.Master.Name, DSN: cfg.Master.DSN.Reveal()},
		Tables:        cfg.Replicate.Tables,
		Exclude:       cfg.Replicate.Exclude,
		Sequences:     cfg.Replicate.Sequences,
		PollInterval:  cfg.Replicate.PollInterval.Duration,
		BatchInterval: cfg.Replicate.BatchInterval.Duration,
		PurgeInterval: cfg.Replicate.PurgeInterval.Duration,
		MaxBackoff:    cfg.Replicate.MaxBackoff.Duration,
		BatchEvents:   cfg.Replicate.BatchEvents,
		BatchBytes:    cfg.Replicate.BatchBytes.Bytes,

		OnConflict:       cfg.Replicate.OnConflict,
		OnConflictTables: cfg.Replicate.OnConflictTables,
		Copy:             cfg.Replicate.Copy,
		Create:           cfg.Replicate.Create,
		CaptureNew:       cfg.Replicate.CaptureNew,
	}
	for _, s := range cfg.Slaves {
		o.Slaves = append(o.Slaves, replicator.Node{Name: s.Name, DSN: s.DSN.Reveal(), TwoPhase: s.UsesTwoPhase(), NoForward: !s.Forwards()})
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

// newLogger returns the daemon's logger as the [log] section says (see
// package logging); $GOREPLICA_LOG_LEVEL (debug, info, warn, error)
// overrides its level. service is the service name under a service manager.
func newLogger(lc config.Log, stderr io.Writer, service string) (*slog.Logger, func() error, error) {
	var level slog.Level
	name := lc.Level
	if v := os.Getenv("GOREPLICA_LOG_LEVEL"); v != "" {
		name = v
	}
	if err := level.UnmarshalText([]byte(name)); err != nil {
		return nil, nil, fmt.Errorf("log level %q: %w", name, err)
	}
	return logging.New(logging.Options{
		Level:    level,
		Format:   lc.Format,
		Stderr:   stderr,
		File:     lc.File,
		MaxSize:  lc.MaxSize.Bytes,
		MaxFiles: lc.MaxFiles,
		Service:  service,
	})
}

// startMetrics starts the [metrics] listener and makes the metrics the
// replicator's observer; stop closes the listener.
func startMetrics(cfg *config.Config, opts *replicator.Options, m *mailer.Mailer, logger *slog.Logger) (stop func(), err error) {
	statusOpts := *opts
	mo := metrics.Options{Status: func(ctx context.Context) (*replicator.Status, error) {
		return replicator.GetStatus(ctx, statusOpts)
	}}
	if m != nil {
		mo.Mail = m.Counts
	}
	met := metrics.New(mo)
	met.Slaves(slaveNames(cfg))
	opts.Observer = met
	srv, err := metrics.Listen(cfg.Metrics.Listen, met.Handler(), logger)
	if err != nil {
		return nil, err
	}
	logger.Info("serving metrics", "listen", srv.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			logger.Warn("metrics listener", "error", err)
		}
	}, nil
}

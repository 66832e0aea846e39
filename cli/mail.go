package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/goreplica/goreplica/config"
	"github.com/goreplica/goreplica/mailer"
	"github.com/goreplica/goreplica/replicator"
)

// mailOptions translates the [mail] section into mailer options.
func mailOptions(m *config.Mail) mailer.Options {
	events := make([]mailer.Kind, len(m.Events))
	for i, e := range m.Events {
		events[i] = mailer.Kind(e)
	}
	return mailer.Options{
		Host:          m.Host,
		Port:          m.Port,
		Username:      m.Username,
		Password:      m.Password.Reveal(),
		From:          m.From,
		To:            m.To,
		TLS:           m.TLS,
		Auth:          m.Auth,
		SubjectPrefix: m.SubjectPrefix,
		Events:        events,
		MinInterval:   m.MinInterval.Duration,
		Timeout:       m.Timeout.Duration,
	}
}

// configSummary describes the configuration for the start mail and the
// log, with every password masked.
func configSummary(cfg *config.Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "config: %s\n", cfg.Path)
	fmt.Fprintf(&b, "master %s: %s\n", cfg.Master.Name, cfg.Master.DSN)
	for _, s := range cfg.Slaves {
		mode := "two-phase commit"
		if !s.UsesTwoPhase() {
			mode = "plain commit"
		}
		fmt.Fprintf(&b, "slave %s: %s (%s)\n", s.Name, s.DSN, mode)
	}
	fmt.Fprintf(&b, "tables: %s", strings.Join(cfg.Replicate.Tables, ", "))
	if len(cfg.Replicate.Exclude) > 0 {
		fmt.Fprintf(&b, " (except %s)", strings.Join(cfg.Replicate.Exclude, ", "))
	}
	fmt.Fprintf(&b, "\npoll every %s, purge every %s\n", cfg.Replicate.PollInterval, cfg.Replicate.PurgeInterval)
	if cfg.Mail != nil {
		fmt.Fprintf(&b, "%s, lag alert above %s\n", cfg.Mail, cfg.Mail.LagAlert)
	}
	return b.String()
}

// mailStopTimeout is how long the last mails get at stop.
const mailStopTimeout = 5 * time.Second

// startMailer starts the alert mailer when the configuration has a [mail]
// section (it returns nil otherwise) and sends the start mail.
func startMailer(cfg *config.Config, logger *slog.Logger, version string) (*mailer.Mailer, error) {
	if cfg.Mail == nil {
		return nil, nil
	}
	m, err := mailer.New(mailOptions(cfg.Mail), logger)
	if err != nil {
		return nil, fmt.Errorf("mail: %w", err)
	}
	m.Notify(mailer.Event{Kind: mailer.KindStart,
		Summary: fmt.Sprintf("goreplica %s started: %s -> %s", version, cfg.Master.Name, strings.Join(slaveNames(cfg), ", ")),
		Body:    configSummary(cfg)})
	return m, nil
}

// stopMailer sends the stop mail (the abnormal-stop mail when runErr is
// an error other than a cancellation) and gives the queue mailStopTimeout
// to go out. A nil m does nothing.
func stopMailer(m *mailer.Mailer, runErr error, logger *slog.Logger) {
	if m == nil {
		return
	}
	e := mailer.Event{Kind: mailer.KindStop, Summary: "goreplica stopped"}
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		first, _, _ := strings.Cut(runErr.Error(), "\n")
		e = mailer.Event{Kind: mailer.KindAbort, Summary: "goreplica stopped abnormally: " + first, Body: runErr.Error()}
	}
	m.Notify(e)
	ctx, cancel := context.WithTimeout(context.Background(), mailStopTimeout)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		logger.Warn("alert mail at stop", "error", err)
	}
}

// mailAlerter hands the replicator's alerts to the mailer.
type mailAlerter struct {
	m          *mailer.Mailer
	configPath string // named in the commands a mail suggests
}

var _ replicator.Alerter = mailAlerter{}

// Alert implements replicator.Alerter; it never blocks.
func (a mailAlerter) Alert(al replicator.Alert) { a.m.Notify(alertEvent(al, a.configPath)) }

// alertEvent words a replicator alert as a mail event: conflicts and apply
// errors from their typed errors (slave, table, key, txid, statement,
// policy, next step), everything else from the alert's own lines.
func alertEvent(al replicator.Alert, configPath string) mailer.Event {
	var ce *replicator.ConflictError
	var ae *replicator.ApplyError
	switch {
	case errors.As(al.Err, &ce):
		policy := ce.Policy
		if policy == "" {
			policy = replicator.PolicyStop
		}
		return mailer.Apply{Slave: ce.Slave, Table: ce.Table, Key: ce.Key, TxID: ce.TxID, SQL: ce.SQL,
			Reason: string(ce.Kind), Policy: policy, ConfigPath: configPath}.Event()
	case errors.As(al.Err, &ae):
		return mailer.Apply{Slave: ae.Slave, Table: ae.Table, Key: ae.Key, TxID: ae.TxID, SQL: ae.SQL,
			Err: ae.Err, Policy: "stop", ConfigPath: configPath}.Event()
	}
	body := al.Body
	if body == "" && al.Err != nil {
		body = al.Err.Error()
	}
	return mailer.Event{Kind: mailer.Kind(al.Kind), Slave: al.Slave, Summary: al.Summary, Body: body}
}

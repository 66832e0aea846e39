package main

import (
	"fmt"
	"strings"

	"github.com/goreplica/goreplica/config"
	"github.com/goreplica/goreplica/mailer"
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

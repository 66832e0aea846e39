package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// httpGet returns the body of a 200 answer to GET u.
func httpGet(ctx context.Context, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return string(b), nil
}

// startPrometheus runs a Prometheus server of its own (temporary
// configuration and data directory, a free port) that scrapes target every
// 3 seconds (a scrape reads the status from every server: 1 s timed out on a
// loaded machine); it is stopped by its PID when the test ends. It returns the
// server's base URL.
func startPrometheus(t *testing.T, bin, target string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	conf := fmt.Sprintf("global:\n  scrape_interval: 3s\n  scrape_timeout: 3s\n  evaluation_interval: 3s\nscrape_configs:\n  - job_name: goreplica\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", closedPort(t))
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("prometheus (pid %d) output:\n%s", cmd.Process.Pid, lastLines(out.String(), 30))
		}
	})
	base := "http://" + addr
	waitFor(testContext(t, time.Minute), t, "Prometheus is ready", func(ctx context.Context) (bool, string) {
		select {
		case <-done:
			t.Fatalf("prometheus exited:\n%s", lastLines(out.String(), 30))
		default:
		}
		body, err := httpGet(ctx, base+"/-/ready")
		return err == nil, fmt.Sprint(body, err)
	})
	return base
}

// promQuery runs an instant query and returns each series' value by the
// value of label.
func promQuery(ctx context.Context, base, query, label string) (map[string]float64, error) {
	body, err := httpGet(ctx, base+"/api/v1/query?query="+url.QueryEscape(query))
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, s := range r.Data.Result {
		if len(s.Value) == 2 {
			v, _ := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
			out[s.Metric[label]] = v
		}
	}
	return out, nil
}

// TestPrometheusScrapesDaemon: a real Prometheus server scrapes the
// daemon's [metrics] listener; its API returns goreplica_slave_lag_seconds
// for each slave, rising while one is stopped on a conflict and back to 0
// once it applies again. The scrape passes 'promtool check metrics', the
// alert rules 'promtool check rules', and every goreplica metric the rules
// and the dashboard name is served.
func TestPrometheusScrapesDaemon(t *testing.T) {
	t.Parallel()
	promBin := requireTool(t, "prometheus", "prometheus")
	promtool := requireTool(t, "promtool", "prometheus")
	ctx := testContext(t, 4*time.Minute)
	ms, ss := servers(t)
	master := newDB(t, ms, "prom_master")
	slaves := []database{newDB(t, ss, "prom_lyon"), newDB(t, ss, "prom_nice")}
	execAll(t, `CREATE TABLE t (id int PRIMARY KEY, v text)`, append([]database{master}, slaves...)...)
	listen := fmt.Sprintf("127.0.0.1:%d", closedPort(t))
	cfg := writeFile(t, "goreplica.toml", configFile{
		master: node{name: "paris", dsn: master.dsn()},
		slaves: []node{{name: "lyon", dsn: slaves[0].dsn()}, {name: "nice", dsn: slaves[1].dsn()}},
	}.toml()+fmt.Sprintf("\n[metrics]\nlisten = %q\n", listen))
	mustRun(t, nil, "init", "-c", cfg)
	d := startDaemon(t, cfg)
	waitFor(ctx, t, "/healthz answers 200", func(ctx context.Context) (bool, string) {
		d.requireAlive()
		body, err := httpGet(ctx, "http://"+listen+"/healthz")
		return err == nil, fmt.Sprint(body, err)
	})
	execAll(t, `INSERT INTO t SELECT g, 'a' FROM generate_series(1, 50) g`, master)
	waitConverged(ctx, t, master, slaves, "t")

	scrape, err := httpGet(ctx, "http://"+listen+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	lint := exec.CommandContext(ctx, promtool, "check", "metrics")
	lint.Stdin = strings.NewReader(scrape)
	if out, err := lint.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	for _, want := range []string{`goreplica_applied_events_total{slave="lyon"} 50`, `goreplica_slave_state{slave="nice",state="running"} 1`,
		`goreplica_slave_up{slave="lyon"} 1`, "goreplica_replica_log_bytes ", "go_goroutines ", "process_resident_memory_bytes "} {
		if !strings.Contains(scrape, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	rules := filepath.Join("..", "monitoring", "alerts.yml")
	if out, err := exec.CommandContext(ctx, promtool, "check", "rules", rules).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
	// Every metric the rules and the dashboard use is served (mail metrics
	// need a [mail] section).
	served := regexp.MustCompile(`(?m)^# TYPE (goreplica_\w+)`).FindAllStringSubmatch(scrape, -1)
	var names []string
	for _, m := range served {
		names = append(names, m[1])
	}
	for _, f := range []string{rules, filepath.Join("..", "monitoring", "grafana-dashboard.json")} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`goreplica_[a-z_]+`).FindAllString(string(b), -1) {
			base := strings.TrimSuffix(m, "_bucket")
			if !slices.Contains(names, base) && !strings.HasPrefix(base, "goreplica_mail_") {
				t.Errorf("%s uses %s, which the daemon does not serve", f, m)
			}
		}
	}

	prom := startPrometheus(t, promBin, listen)
	lag := func(ctx context.Context) (map[string]float64, string) {
		v, err := promQuery(ctx, prom, "goreplica_slave_lag_seconds", "slave")
		return v, fmt.Sprint(v, err)
	}
	waitFor(ctx, t, "Prometheus returns a lag of 0 for lyon and nice", func(ctx context.Context) (bool, string) {
		d.requireAlive()
		v, s := lag(ctx)
		l, okL := v["lyon"]
		n, okN := v["nice"]
		return okL && okN && l == 0 && n == 0, s
	})

	// lyon stops on a conflict while the master goes on writing.
	execAll(t, `INSERT INTO t VALUES (1000, 'lyon')`, slaves[0])
	execAll(t, `INSERT INTO t VALUES (1000, 'paris')`, master)
	var first float64
	waitFor(ctx, t, "Prometheus shows lyon lagging", func(ctx context.Context) (bool, string) {
		v, s := lag(ctx)
		first = v["lyon"]
		return first > 0, s
	})
	// lyon's lag grows without bound while nice's stays bounded: on a
	// loaded machine nice may lag a second too, so the test waits for lyon
	// to be well behind nice rather than comparing with a fixed figure.
	waitFor(ctx, t, "lyon's lag rises past nice's", func(ctx context.Context) (bool, string) {
		execAll(t, `UPDATE t SET v = v || '.' WHERE id = 1`, master)
		v, s := lag(ctx)
		return v["lyon"] > first && v["lyon"] > v["nice"]+2, s
	})
	if v, err := promQuery(ctx, prom, `goreplica_slave_state{state="conflict"}`, "slave"); err != nil || v["lyon"] != 1 {
		t.Errorf("goreplica_slave_state{state=\"conflict\"}: %v, %v; want lyon 1", v, err)
	}
	execAll(t, `DELETE FROM t WHERE id = 1000`, slaves[0])
	waitConverged(ctx, t, master, slaves, "t")
	waitFor(ctx, t, "Prometheus shows lyon's lag back to 0", func(ctx context.Context) (bool, string) {
		v, s := lag(ctx)
		l, ok := v["lyon"]
		return ok && l == 0, s
	})
	if v, err := promQuery(ctx, prom, "goreplica_conflicts_total", "slave"); err != nil || v["lyon"] < 1 {
		t.Errorf("goreplica_conflicts_total: %v, %v; want lyon >= 1", v, err)
	}
	d.stop()
}

// Prometheus' own Kubernetes service discovery (discovery/kubernetes of the
// Prometheus release Debian packages), served as HTTP service discovery.
//
// Debian builds its prometheus without kubernetes_sd_configs (the package
// dropped client-go), so the live test runs Debian's server with
// http_sd_configs pointing here: this program runs, per job, the very
// kubernetes_sd_configs the Prometheus Operator would generate and answers
// GET /targets?job=<job_name> with the discovered targets and all their
// __meta_kubernetes_* labels, which the server's relabel_configs then keep,
// drop and map exactly as a Prometheus with built-in Kubernetes discovery does.
//
// Usage: kubernetes-sd -config sd.yml -listen 127.0.0.1:PORT
// sd.yml maps job names to lists of kubernetes_sd_configs entries.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"sync"
	"syscall"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"gopkg.in/yaml.v2"
)

// entry is one target in the HTTP SD format.
type entry struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

type job struct {
	mu     sync.Mutex
	groups map[string]*targetgroup.Group
}

func (j *job) update(tgs []*targetgroup.Group) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, tg := range tgs {
		if tg != nil {
			j.groups[tg.Source] = tg
		}
	}
}

func (j *job) entries() []entry {
	j.mu.Lock()
	defer j.mu.Unlock()
	sources := make([]string, 0, len(j.groups))
	for s := range j.groups {
		sources = append(sources, s)
	}
	sort.Strings(sources)
	out := []entry{}
	for _, s := range sources {
		tg := j.groups[s]
		for _, t := range tg.Targets {
			labels := map[string]string{}
			for k, v := range tg.Labels {
				labels[string(k)] = string(v)
			}
			for k, v := range t {
				labels[string(k)] = string(v)
			}
			addr := labels[model.AddressLabel]
			delete(labels, model.AddressLabel)
			out = append(out, entry{Targets: []string{addr}, Labels: labels})
		}
	}
	return out
}

func main() {
	configFile := flag.String("config", "", "YAML: job name -> kubernetes_sd_configs")
	listen := flag.String("listen", "127.0.0.1:0", "address to serve /targets on")
	flag.Parse()
	logger := log.NewLogfmtLogger(log.NewSyncWriter(os.Stderr))

	raw, err := os.ReadFile(*configFile)
	if err != nil {
		level.Error(logger).Log("msg", "Reading config failed", "err", err)
		os.Exit(1)
	}
	var configs map[string][]*kubernetes.SDConfig
	if err := yaml.UnmarshalStrict(raw, &configs); err != nil {
		level.Error(logger).Log("msg", "Parsing config failed", "err", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	jobs := map[string]*job{}
	for name, sds := range configs {
		j := &job{groups: map[string]*targetgroup.Group{}}
		jobs[name] = j
		for _, sd := range sds {
			sd.SetDirectory(filepath.Dir(*configFile))
			d, err := kubernetes.New(log.With(logger, "job", name), sd)
			if err != nil {
				level.Error(logger).Log("msg", "Starting discovery failed", "job", name, "err", err)
				os.Exit(1)
			}
			ch := make(chan []*targetgroup.Group)
			go d.Run(ctx, ch)
			go func() {
				for {
					select {
					case <-ctx.Done():
						return
					case tgs := <-ch:
						j.update(tgs)
					}
				}
			}()
		}
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/targets", func(w http.ResponseWriter, r *http.Request) {
		j, ok := jobs[r.URL.Query().Get("job")]
		if !ok {
			http.Error(w, "no such job", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(j.entries())
	})
	srv := &http.Server{Addr: *listen, Handler: mux}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	level.Info(logger).Log("msg", "Serving HTTP service discovery", "listen", *listen)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		level.Error(logger).Log("msg", "Serving failed", "err", err)
		os.Exit(1)
	}
}

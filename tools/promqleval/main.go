// promqleval evaluates PromQL with Prometheus' own engine over series given on stdin, so tests
// can check the behaviour of a query voxplane renders (e.g. a KEDA ScaledObject's) exactly as a
// Prometheus server would compute it, without running a server or scraping anything.
//
// Input (JSON on stdin):
//
//	{"series": [{"labels": {"__name__": "m", "a": "b"}, "samples": [[0, 1.5], [15, 2]]}],
//	 "queries": [{"expr": "sum(m) or vector(0)", "time": 30}]}
//
// Times are seconds. Output (JSON on stdout), one entry per query, in order:
//
//	[{"expr": "...", "type": "vector", "result": [{"labels": {...}, "value": 3.5}]}]
//
// A query that fails to parse or evaluate gets {"error": "..."} instead of a result.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/tsdb"
)

type series struct {
	Labels  map[string]string `json:"labels"`
	Samples [][2]float64      `json:"samples"`
}

type query struct {
	Expr string  `json:"expr"`
	Time float64 `json:"time"`
}

type input struct {
	Series  []series `json:"series"`
	Queries []query  `json:"queries"`
}

type sample struct {
	Labels map[string]string `json:"labels"`
	Value  *float64          `json:"value"`
}

type answer struct {
	Expr   string   `json:"expr"`
	Type   string   `json:"type,omitempty"`
	Result []sample `json:"result"`
	Error  string   `json:"error,omitempty"`
}

func ms(seconds float64) int64 { return int64(math.Round(seconds * 1000)) }

func value(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil // JSON has no NaN/Inf; tests see null
	}
	return &v
}

func run() error {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		return fmt.Errorf("reading input: %w", err)
	}
	dir, err := os.MkdirTemp("", "promqleval-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	opts := tsdb.DefaultOptions()
	opts.OutOfOrderTimeWindow = math.MaxInt64 / 2
	db, err := tsdb.Open(dir, nil, nil, opts, nil)
	if err != nil {
		return fmt.Errorf("opening tsdb: %w", err)
	}
	defer db.Close()
	app := db.Appender(context.Background())
	for _, s := range in.Series {
		ls := labels.FromMap(s.Labels)
		for _, smp := range s.Samples {
			if _, err := app.Append(0, ls, ms(smp[0]), smp[1]); err != nil {
				return fmt.Errorf("appending %v: %w", s.Labels, err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		return fmt.Errorf("committing samples: %w", err)
	}
	engine := promql.NewEngine(promql.EngineOpts{
		MaxSamples:    50000000,
		Timeout:       time.Minute,
		LookbackDelta: 5 * time.Minute, // Prometheus' default --query.lookback-delta
	})
	out := make([]answer, 0, len(in.Queries))
	for _, q := range in.Queries {
		a := answer{Expr: q.Expr, Result: []sample{}}
		qry, err := engine.NewInstantQuery(context.Background(), db, nil, q.Expr, time.UnixMilli(ms(q.Time)))
		if err != nil {
			a.Error = err.Error()
			out = append(out, a)
			continue
		}
		res := qry.Exec(context.Background())
		if res.Err != nil {
			a.Error = res.Err.Error()
		} else {
			a.Type = string(res.Value.Type())
			switch v := res.Value.(type) {
			case promql.Vector:
				for _, s := range v {
					a.Result = append(a.Result, sample{Labels: s.Metric.Map(), Value: value(s.F)})
				}
			case promql.Scalar:
				a.Result = append(a.Result, sample{Labels: map[string]string{}, Value: value(v.V)})
			default:
				a.Error = fmt.Sprintf("unsupported result type %s", res.Value.Type())
			}
		}
		qry.Close()
		out = append(out, a)
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "promqleval:", err)
		os.Exit(1)
	}
}

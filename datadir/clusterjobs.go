package datadir

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/webhooker/caddy-webhooker/admin"
)

// Bulk redelivery in cluster mode: each node holds the events it applied,
// so a job is started on every node, under one id, each redelivering what
// it holds; its status and its cancel are asked of every node and added up.

// bulkJobPath says whether path is a webhook's bulk redelivery (start) or
// one of its jobs (status, cancel).
func bulkJobPath(path string) (start, job bool) {
	parts, ok := webhookPath(path)
	if !ok || len(parts) < 2 || parts[1] != "redeliver" {
		return false, false
	}
	return len(parts) == 2, len(parts) == 3
}

// bulkJobOp says whether the request is one the nodes carry out together.
func bulkJobOp(method, path string) bool {
	start, job := bulkJobPath(path)
	return start && method == http.MethodPost || job && (method == http.MethodGet || method == http.MethodDelete)
}

// jobs starts, reads or cancels a bulk redelivery job on every node.
func (c clusterReads) jobs(w http.ResponseWriter, r *http.Request) {
	rq := readRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery}
	if r.Method == http.MethodPost {
		body, ok := c.opBody(w, r)
		if !ok {
			return
		}
		rq.Body, rq.JobID = body, uuid.NewString()
	}
	answers, err := c.gather(r.Context(), rq, nil)
	if err != nil {
		writeRaw(w, http.StatusServiceUnavailable, errorBody("asking the cluster's nodes: "+err.Error()))
		return
	}
	status, body := mergeJobs(answers, r.Method == http.MethodPost)
	writeRaw(w, status, body)
}

// mergeJobs adds up the nodes' answers about one job: its counts summed,
// running while a node runs it, else failed, cancelled or done as the
// worst node's; started at the first node's start, finished at the last's.
// A dry run's matches are summed. Without a 2xx, the first that says more
// than 404 is the answer. wrapped: a start's answer, {"job": …}.
func mergeJobs(answers []readAnswer, wrapped bool) (int, []byte) {
	var (
		sum    *admin.JobView
		status int
		dry    *int
		errs   []string
	)
	rank := map[string]int{"done": 0, "cancelled": 1, "failed": 2, "running": 3}
	for _, a := range answers {
		if a.Status < 200 || a.Status >= 300 {
			if a.Status != http.StatusNotFound {
				var e struct {
					Error string `json:"error"`
				}
				_ = json.Unmarshal(a.Body, &e)
				errs = append(errs, fmt.Sprintf("node %s: %d %s", a.Node, a.Status, e.Error))
			}
			continue
		}
		var v struct {
			Job     *admin.JobView `json:"job"`
			Matched *int           `json:"matched"`
		}
		var j admin.JobView
		switch err := json.Unmarshal(a.Body, &v); {
		case err != nil:
			continue
		case wrapped && v.Job == nil && v.Matched != nil: // a dry run
			if dry == nil {
				dry = new(int)
			}
			*dry += *v.Matched
			status = a.Status
			continue
		case wrapped && v.Job != nil:
			j = *v.Job
		case !wrapped && json.Unmarshal(a.Body, &j) == nil:
		default:
			continue
		}
		status = a.Status
		if sum == nil {
			sum = &j
			continue
		}
		sum.Matched += j.Matched
		sum.Redelivered += j.Redelivered
		sum.Errors += j.Errors
		if rank[j.State] > rank[sum.State] {
			sum.State = j.State
		}
		if j.LastError != "" {
			sum.LastError = strings.TrimPrefix(sum.LastError+"; "+j.LastError, "; ")
		}
		if j.StartedAt.Before(sum.StartedAt) {
			sum.StartedAt = j.StartedAt
		}
		if sum.FinishedAt != nil && j.FinishedAt != nil && j.FinishedAt.After(*sum.FinishedAt) {
			sum.FinishedAt = j.FinishedAt
		}
	}
	if dry != nil {
		return status, mustJSON(map[string]int{"matched": *dry})
	}
	if sum == nil {
		return firstFound(answers)
	}
	if sum.State == "running" {
		sum.FinishedAt = nil
	}
	if len(errs) > 0 {
		sum.LastError = strings.TrimPrefix(sum.LastError+"; "+strings.Join(errs, "; "), "; ")
	}
	if wrapped {
		return status, mustJSON(map[string]any{"job": sum})
	}
	return status, mustJSON(sum)
}

// routeprobe asks a running livekit-server, over its Redis bus, exactly what livekit-sip asks
// when an INVITE arrives: IOInfo.GetSIPTrunkAuthentication and IOInfo.EvaluateSIPDispatchRules,
// through rpc.NewIOInfoClient(psrpc.NewRedisMessageBus(redis)) as cmd/livekit-sip builds it.
//
// It only asks and prints; it decides nothing. voxplane (voxplane/livekit/route.py) sends the
// requests and applies livekit-sip's handling of the answers.
//
// Protocol: one JSON request per stdin line, one JSON answer per stdout line, matched by "id".
// Requests are served concurrently, so answers may come out of order.
//
//	{"id": 1, "method": "auth"|"dispatch", "call": <rpc.SIPCall as protojson>,
//	 "sip_trunk_id": "ST_...", "pin": "1234", "no_pin": false}
//	{"id": 1, "ok": true, "ms": 1.03, "response": <the server's answer as protojson>}
//	{"id": 1, "ok": false, "ms": 3000.1, "error": "...", "code": "unavailable"}
//
// Before the first request it prints {"ready": true, "settle_ms": N}: psrpc's Redis bus
// subscribes asynchronously, and a request sent at once can be lost ("no response from
// servers"); waiting -settle after creating the client avoids that.
//
// The Redis password, if any, comes from $VOXPLANE_LIVEKIT_REDIS_PASSWORD (never argv).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/livekit/protocol/rpc"
	"github.com/livekit/psrpc"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

type request struct {
	ID         int64           `json:"id"`
	Method     string          `json:"method"`
	Call       json.RawMessage `json:"call"`
	SipTrunkID string          `json:"sip_trunk_id"`
	Pin        string          `json:"pin"`
	NoPin      bool            `json:"no_pin"`
}

type answer struct {
	ID       int64           `json:"id"`
	OK       bool            `json:"ok"`
	Ms       float64         `json:"ms"`
	Response json.RawMessage `json:"response,omitempty"`
	Error    string          `json:"error,omitempty"`
	Code     string          `json:"code,omitempty"`
}

var marshal = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: false}

func main() {
	addr := flag.String("redis", "", "Redis host:port of the livekit-server deployment (required)")
	db := flag.Int("db", 0, "Redis database")
	settle := flag.Duration("settle", 200*time.Millisecond, "wait after creating the client (psrpc subscribe race)")
	timeout := flag.Duration("timeout", 3*time.Second, "per-request timeout")
	flag.Parse()
	if *addr == "" {
		fmt.Fprintln(os.Stderr, "routeprobe: -redis HOST:PORT is required")
		os.Exit(2)
	}

	rc := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:    []string{*addr},
		Password: os.Getenv("VOXPLANE_LIVEKIT_REDIS_PASSWORD"),
		DB:       *db,
	})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	err := rc.Ping(ctx).Err()
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "routeprobe: cannot reach Redis at %s: %v\n", *addr, err)
		os.Exit(1)
	}
	client, err := rpc.NewIOInfoClient(psrpc.NewRedisMessageBus(rc), psrpc.WithClientTimeout(*timeout))
	if err != nil {
		fmt.Fprintf(os.Stderr, "routeprobe: creating the IOInfo client: %v\n", err)
		os.Exit(1)
	}
	time.Sleep(*settle)

	var mu sync.Mutex
	out := json.NewEncoder(os.Stdout)
	emit := func(v any) {
		mu.Lock()
		defer mu.Unlock()
		_ = out.Encode(v) // one line per value
	}
	emit(map[string]any{"ready": true, "settle_ms": settle.Milliseconds()})

	var wg sync.WaitGroup
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64*1024), 1024*1024)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			emit(answer{OK: false, Error: "bad request line: " + err.Error(), Code: "bad_request"})
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			emit(serve(client, req, *timeout))
		}()
	}
	wg.Wait()
}

func serve(client rpc.IOInfoClient, req request, timeout time.Duration) answer {
	call := &rpc.SIPCall{}
	if err := protojson.Unmarshal(req.Call, call); err != nil {
		return answer{ID: req.ID, Error: "bad call: " + err.Error(), Code: "bad_request"}
	}
	from, to := call.GetFrom(), call.GetTo()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	var resp proto.Message
	var err error
	switch req.Method {
	case "auth":
		// As livekit-sip sends it: the call, plus the old flat fields.
		resp, err = client.GetSIPTrunkAuthentication(ctx, &rpc.GetSIPTrunkAuthenticationRequest{
			Call:       call,
			SipCallId:  call.GetSipCallId(),
			From:       from.GetUser(),
			FromHost:   from.GetHost(),
			To:         to.GetUser(),
			ToHost:     to.GetHost(),
			SrcAddress: call.GetSourceIp(),
		})
	case "dispatch":
		resp, err = client.EvaluateSIPDispatchRules(ctx, &rpc.EvaluateSIPDispatchRulesRequest{
			Call:          call,
			SipTrunkId:    req.SipTrunkID,
			Pin:           req.Pin,
			NoPin:         req.NoPin,
			SipCallId:     call.GetSipCallId(),
			CallingNumber: from.GetUser(),
			CallingHost:   from.GetHost(),
			CalledNumber:  to.GetUser(),
			CalledHost:    to.GetHost(),
			SrcAddress:    call.GetSourceIp(),
		})
	default:
		return answer{ID: req.ID, Error: fmt.Sprintf("unknown method %q (auth, dispatch)", req.Method), Code: "bad_request"}
	}
	ms := float64(time.Since(start).Microseconds()) / 1000
	if err != nil {
		code := "unknown"
		var perr psrpc.Error
		if errors.As(err, &perr) {
			code = string(perr.Code())
		}
		return answer{ID: req.ID, Ms: ms, Error: err.Error(), Code: code}
	}
	body, err := marshal.Marshal(resp)
	if err != nil {
		return answer{ID: req.ID, Ms: ms, Error: "encoding the answer: " + err.Error(), Code: "internal"}
	}
	return answer{ID: req.ID, OK: true, Ms: ms, Response: body}
}

package bus

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
)

// KVNextRevision returns a function that asks the leader of bucket's stream
// for the first revision at or after from that the bucket still holds (0 if
// none). It uses the stream's own message API, not direct get: a KV bucket
// allows direct gets, and those may be answered by a replica that lags.
func KVNextRevision(nc *nats.Conn, bucket string) func(ctx context.Context, from uint64) (uint64, error) {
	subject := "$JS.API.STREAM.MSG.GET.KV_" + bucket
	filter := "$KV." + bucket + ".>"
	return func(ctx context.Context, from uint64) (uint64, error) {
		req, err := json.Marshal(struct {
			Seq  uint64 `json:"seq"`
			Next string `json:"next_by_subj"`
		}{from, filter})
		if err != nil {
			return 0, err
		}
		msg, err := nc.RequestWithContext(ctx, subject, req)
		if err != nil {
			return 0, fmt.Errorf("bus: next revision of bucket %q: %w", bucket, err)
		}
		var resp struct {
			Message *struct {
				Seq uint64 `json:"seq"`
			} `json:"message"`
			Error *struct {
				Code        int    `json:"code"`
				ErrCode     int    `json:"err_code"`
				Description string `json:"description"`
			} `json:"error"`
		}
		if err := json.Unmarshal(msg.Data, &resp); err != nil {
			return 0, fmt.Errorf("bus: next revision of bucket %q: %w", bucket, err)
		}
		switch {
		case resp.Error != nil && resp.Error.ErrCode == jsErrCodeMessageNotFound:
			return 0, nil
		case resp.Error != nil:
			return 0, fmt.Errorf("bus: next revision of bucket %q: %s (code %d, err_code %d)", bucket, resp.Error.Description, resp.Error.Code, resp.Error.ErrCode)
		case resp.Message == nil || resp.Message.Seq == 0:
			return 0, fmt.Errorf("bus: next revision of bucket %q: empty reply", bucket)
		}
		return resp.Message.Seq, nil
	}
}

// jsErrCodeMessageNotFound is JetStream's "no message found" (JSNoMessageFoundErr).
const jsErrCodeMessageNotFound = 10037

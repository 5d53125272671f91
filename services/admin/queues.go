package admin

import (
	"context"
	"errors"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "kurier.dev/proto/kurier/admin/v1"
	"kurier.dev/services/internal/queues"
)

func (s *Service) ListQueues(ctx context.Context, req *adminv1.ListQueuesRequest) (*adminv1.ListQueuesResponse, error) {
	if _, err := s.org(ctx, req.GetOrgId()); err != nil {
		return nil, err
	}
	list, err := s.queues.List(ctx, req.GetOrgId())
	if err != nil {
		return nil, err
	}
	resp := &adminv1.ListQueuesResponse{Queues: make([]*adminv1.Queue, len(list))}
	now := s.now()
	for i, q := range list {
		depth, oldest, err := s.queues.Stats(ctx, q.ID)
		if err != nil {
			return nil, err
		}
		pb := &adminv1.Queue{QueueId: q.ID, OrgId: q.Org, CreateTime: timestamppb.New(q.Created), Depth: depth}
		if !oldest.IsZero() {
			pb.OldestMessageAge = durationpb.New(max(now.Sub(oldest), 0))
		}
		resp.Queues[i] = pb
	}
	return resp, nil
}

func (s *Service) DeleteQueue(ctx context.Context, req *adminv1.DeleteQueueRequest) (*adminv1.DeleteQueueResponse, error) {
	if _, err := s.org(ctx, req.GetOrgId()); err != nil {
		return nil, err
	}
	if !queues.ValidID(req.GetQueueId()) {
		return nil, invalid("queue_id", "must be the queueId that POST /api/queues answered")
	}
	err := s.queues.Delete(ctx, req.GetOrgId(), req.GetQueueId())
	if errors.Is(err, queues.ErrNotFound) {
		return nil, notFound("queue", req.GetQueueId())
	}
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "queue deleted", "org", req.GetOrgId(), "queue", req.GetQueueId())
	return &adminv1.DeleteQueueResponse{}, nil
}

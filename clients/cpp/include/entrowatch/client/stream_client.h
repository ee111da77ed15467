#pragma once

// Asynchronous streaming client for entrowatchd (Monitor.Stream).
//
// A training loop calls Enqueue() on its hot path; a sender thread owned by
// the client writes the queued reports to one Monitor.Stream, matches the
// daemon's Acks to them, and reconnects with exponential backoff when the
// stream breaks, resending every report not yet acknowledged, in order. An
// Ack with code UNAVAILABLE (a daemon shutting down) counts as no answer: the
// stream is dropped and the report resent. Any other code is final; the
// daemon acknowledges a resent report it already accepted as a duplicate.
//
//   StreamClientOptions options;
//   options.target = "host:50551";
//   ASSIGN_OR_RETURN(auto client, StreamClient::Create(options));
//   client->Enqueue(report);             // never blocks; false = dropped
//   client->Flush(absl::Now() + absl::Seconds(10));
//   client->Close();

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/security/credentials.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "entrowatch/v1/entrowatch.grpc.pb.h"
#include "entrowatch/v1/entrowatch.pb.h"

namespace entrowatch::client {

// Called once per acknowledged report, on the client's reader thread, with
// the report as sent and the daemon's Ack (ack.code() != 0: rejected). It
// must not call back into the client's Flush() or Close(). Acks name a
// report by (seq, step) only: when reports of several (run, rank) pairs share
// both and the daemon answers them out of order, an Ack can be paired with
// the wrong one of them; unique seqs avoid that.
using AckCallback = std::function<void(const v1::Report& report, const v1::Ack& ack)>;

// entrowatchd's address when none is given: $ENTROWATCH_ADDRESS when set and
// not empty (the variable the CLI and the Python client read too), otherwise
// kDefaultTarget.
inline constexpr char kDefaultTarget[] = "127.0.0.1:50551";
std::string DefaultTarget();

struct StreamClientOptions {
  std::string target = DefaultTarget();  // host:port of entrowatchd
  // Reports held at once: queued plus sent but not yet acknowledged (they are
  // kept for resending). Enqueue() drops beyond this.
  size_t queue_capacity = 1024;
  // Serialized bytes held at once, by the same rule; a report alone in the
  // queue is always accepted, so one larger than this still gets through.
  size_t queue_max_bytes = 256 << 20;
  // Wait between reconnect attempts: starts at initial_backoff, doubles on
  // each failed attempt up to max_backoff (with +-20% jitter), and returns to
  // initial_backoff once an Ack arrives.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(10);
  int max_message_bytes = 64 << 20;
  // Channel credentials; null means plaintext (insecure) credentials.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // Bearer token sent as `authorization: Bearer <token>` on the stream; "" = none.
  std::string bearer_token;
  AckCallback on_ack;
};

struct StreamClientStats {
  uint64_t enqueued = 0;         // accepted by Enqueue / EnqueueWait
  uint64_t dropped = 0;          // refused because the queue was full or closed
  uint64_t acknowledged = 0;     // Acks matched to a report (any code)
  uint64_t rejected = 0;         // of which the daemon refused (code != 0)
  uint64_t resent = 0;           // writes of a report already written before
  uint64_t stream_restarts = 0;  // streams that ended and were reopened
  uint64_t unmatched_acks = 0;   // Acks that matched no outstanding report
  size_t pending = 0;            // queued or in flight, not yet acknowledged
  size_t pending_bytes = 0;      // their serialized size
  absl::Status last_error;       // why the latest stream ended (OK if none did)
};

// Thread-safe: every public method may be called from any thread. Neither
// copyable nor movable; the sender thread lives until Close() or destruction.
class StreamClient {
 public:
  // Creates the channel and starts the sender thread; it connects lazily, so
  // an unreachable daemon is not an error here (see WaitForConnected()).
  static absl::StatusOr<std::unique_ptr<StreamClient>> Create(StreamClientOptions options);

  // Calls Close().
  ~StreamClient();

  StreamClient(const StreamClient&) = delete;
  StreamClient& operator=(const StreamClient&) = delete;

  // Queues a report without blocking on the network. A report whose seq is 0
  // gets the next seq of its (run_id, rank), counted per client; a report
  // without time gets the current wall time. Returns false, and counts a drop,
  // when queue_capacity reports (or queue_max_bytes) are pending or the
  // client is closed.
  bool Enqueue(v1::Report report);

  // Like Enqueue() but waits up to `deadline` for room in the queue (for
  // tools that replay a file and must not lose reports). False, counted as a
  // drop, when there was no room in time or the client is closed.
  bool EnqueueWait(v1::Report report, absl::Time deadline);

  // Waits until every report enqueued so far is acknowledged and its
  // callback has returned. DeadlineExceeded (naming how many are pending and
  // the last stream error) when that has not happened by `deadline`.
  absl::Status Flush(absl::Time deadline);

  // Waits until the channel is connected. Unavailable when it is not by
  // `deadline`.
  absl::Status WaitForConnected(absl::Time deadline);

  // Stops the sender thread and cancels the stream. Reports not yet
  // acknowledged are abandoned (call Flush() first to avoid that); later
  // Enqueue() calls return false. Idempotent.
  void Close();

  StreamClientStats Stats() const;

  // The most recent Ack matched to a report, if any.
  std::optional<v1::Ack> LatestAck() const;

 private:
  struct Entry {
    std::shared_ptr<const v1::Report> report;
    size_t bytes = 0;
    int writes = 0;
  };

  StreamClient(StreamClientOptions options, std::shared_ptr<grpc::Channel> channel);

  bool EnqueueLocked(v1::Report report) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SenderLoop();
  // Runs one stream until it breaks or the client closes. True when at least
  // one Ack arrived on it.
  bool RunStream();
  // Matches Acks to written reports until the stream ends or the daemon
  // answers UNAVAILABLE (then `refused` holds why and nothing is matched).
  void ReadAcks(grpc::ClientReaderWriter<v1::Report, v1::Ack>* stream, bool* acked_any,
                absl::Status* refused);

  bool HasRoom(size_t bytes) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HasWorkOrClosed() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool CanWriteOrStop() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool AllAcknowledged() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const StreamClientOptions options_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<v1::Monitor::Stub> stub_;

  mutable absl::Mutex mu_;
  // Oldest first; entries [0, next_unsent_) were written on the current stream.
  std::deque<Entry> unacked_ ABSL_GUARDED_BY(mu_);
  size_t next_unsent_ ABSL_GUARDED_BY(mu_) = 0;
  size_t unacked_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::pair<std::string, uint32_t>, uint64_t> last_seq_ ABSL_GUARDED_BY(mu_);
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool stream_broken_ ABSL_GUARDED_BY(mu_) = false;
  int callbacks_running_ ABSL_GUARDED_BY(mu_) = 0;
  // The live stream's context, so Close() can cancel blocked reads and writes.
  grpc::ClientContext* stream_context_ ABSL_GUARDED_BY(mu_) = nullptr;
  StreamClientStats stats_ ABSL_GUARDED_BY(mu_);
  std::optional<v1::Ack> latest_ack_ ABSL_GUARDED_BY(mu_);

  absl::Mutex close_mu_;  // serializes Close()
  std::thread sender_;
};

}  // namespace entrowatch::client

#include "entrowatch/client/stream_client.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/support/channel_arguments.h>

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"

namespace entrowatch::client {
namespace {

absl::Status StreamEndStatus(const grpc::Status& status) {
  if (status.ok()) {
    return absl::UnavailableError("stream closed by the server");
  }
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::string_view ChannelStateName(grpc_connectivity_state state) {
  switch (state) {
    case GRPC_CHANNEL_IDLE:
      return "IDLE";
    case GRPC_CHANNEL_CONNECTING:
      return "CONNECTING";
    case GRPC_CHANNEL_READY:
      return "READY";
    case GRPC_CHANNEL_TRANSIENT_FAILURE:
      return "TRANSIENT_FAILURE";
    case GRPC_CHANNEL_SHUTDOWN:
      return "SHUTDOWN";
  }
  return "UNKNOWN";
}

int ToMillis(absl::Duration d) {
  return static_cast<int>(std::max<int64_t>(1, absl::ToInt64Milliseconds(d)));
}

}  // namespace

std::string DefaultTarget() {
  const char* address = std::getenv("ENTROWATCH_ADDRESS");
  return address != nullptr && *address != '\0' ? address : kDefaultTarget;
}

absl::StatusOr<std::unique_ptr<StreamClient>> StreamClient::Create(StreamClientOptions options) {
  if (options.target.empty()) {
    return absl::InvalidArgumentError("target must not be empty");
  }
  if (options.queue_capacity == 0) {
    return absl::InvalidArgumentError("queue_capacity must be at least 1");
  }
  if (options.initial_backoff <= absl::ZeroDuration() ||
      options.max_backoff < options.initial_backoff) {
    return absl::InvalidArgumentError("need 0 < initial_backoff <= max_backoff");
  }
  grpc::ChannelArguments args;
  // gRPC's own reconnect backoff (1 s initial by default) would otherwise
  // delay every reconnect beyond the bounds the caller asked for.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, ToMillis(options.initial_backoff));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, ToMillis(options.initial_backoff));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, ToMillis(options.max_backoff));
  args.SetMaxSendMessageSize(options.max_message_bytes);
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      options.credentials ? options.credentials : grpc::InsecureChannelCredentials();
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(options.target, credentials, args);
  return std::unique_ptr<StreamClient>(new StreamClient(std::move(options), std::move(channel)));
}

StreamClient::StreamClient(StreamClientOptions options, std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      stub_(v1::Monitor::NewStub(channel_)) {
  sender_ = std::thread([this] { SenderLoop(); });
}

StreamClient::~StreamClient() { Close(); }

bool StreamClient::Enqueue(v1::Report report) {
  absl::MutexLock lock(&mu_);
  return EnqueueLocked(std::move(report));
}

bool StreamClient::EnqueueWait(v1::Report report, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  const size_t bytes = report.ByteSizeLong();
  auto room_or_closed = [this, bytes]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closing_ || HasRoom(bytes);
  };
  mu_.AwaitWithDeadline(absl::Condition(&room_or_closed), deadline);
  return EnqueueLocked(std::move(report));
}

bool StreamClient::EnqueueLocked(v1::Report report) {
  const size_t bytes = report.ByteSizeLong();
  if (closing_ || !HasRoom(bytes)) {
    ++stats_.dropped;
    return false;
  }
  uint64_t& last_seq = last_seq_[{report.run_id(), report.rank()}];
  if (report.seq() == 0) {
    report.set_seq(last_seq + 1);
  }
  last_seq = std::max(last_seq, report.seq());
  if (!report.has_time()) {
    *report.mutable_time() =
        google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::GetCurrentTimeNanos());
  }
  unacked_.push_back(Entry{std::make_shared<const v1::Report>(std::move(report)), bytes, 0});
  unacked_bytes_ += bytes;
  ++stats_.enqueued;
  return true;
}

absl::Status StreamClient::Flush(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  if (mu_.AwaitWithDeadline(absl::Condition(this, &StreamClient::AllAcknowledged), deadline)) {
    return absl::OkStatus();
  }
  std::string message = absl::StrCat(unacked_.size(), " report(s) not acknowledged");
  if (!stats_.last_error.ok()) {
    absl::StrAppend(&message, "; last stream error: ", stats_.last_error.ToString());
  }
  return absl::DeadlineExceededError(message);
}

absl::Status StreamClient::WaitForConnected(absl::Time deadline) {
  if (channel_->WaitForConnected(absl::ToChronoTime(deadline))) {
    return absl::OkStatus();
  }
  return absl::UnavailableError(absl::StrCat("no connection to ", options_.target,
                                             " before the deadline (channel state ",
                                             ChannelStateName(channel_->GetState(false)), ")"));
}

void StreamClient::Close() {
  absl::MutexLock close_lock(&close_mu_);
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
    if (stream_context_ != nullptr) {
      stream_context_->TryCancel();
    }
  }
  if (sender_.joinable()) {
    sender_.join();
  }
}

StreamClientStats StreamClient::Stats() const {
  absl::MutexLock lock(&mu_);
  StreamClientStats stats = stats_;
  stats.pending = unacked_.size();
  stats.pending_bytes = unacked_bytes_;
  return stats;
}

std::optional<v1::Ack> StreamClient::LatestAck() const {
  absl::MutexLock lock(&mu_);
  return latest_ack_;
}

bool StreamClient::HasRoom(size_t bytes) const {
  return unacked_.empty() || (unacked_.size() < options_.queue_capacity &&
                              unacked_bytes_ + bytes <= options_.queue_max_bytes);
}

bool StreamClient::HasWorkOrClosed() const { return closing_ || !unacked_.empty(); }

bool StreamClient::CanWriteOrStop() const {
  return closing_ || stream_broken_ || next_unsent_ < unacked_.size();
}

bool StreamClient::AllAcknowledged() const { return unacked_.empty() && callbacks_running_ == 0; }

void StreamClient::SenderLoop() {
  absl::Duration backoff = options_.initial_backoff;
  absl::BitGen rng;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &StreamClient::HasWorkOrClosed));
      if (closing_) {
        return;
      }
    }
    if (RunStream()) {
      backoff = options_.initial_backoff;
    }
    absl::MutexLock lock(&mu_);
    if (closing_) {
      return;
    }
    const absl::Duration wait = backoff * absl::Uniform(rng, 0.8, 1.2);
    mu_.AwaitWithTimeout(absl::Condition(&closing_), wait);
    if (closing_) {
      return;
    }
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

bool StreamClient::RunStream() {
  grpc::ClientContext context;
  if (!options_.bearer_token.empty()) {
    context.AddMetadata("authorization", "Bearer " + options_.bearer_token);
  }
  {
    absl::MutexLock lock(&mu_);
    if (closing_) {
      return false;
    }
    stream_context_ = &context;
    stream_broken_ = false;
    next_unsent_ = 0;
  }
  std::unique_ptr<grpc::ClientReaderWriter<v1::Report, v1::Ack>> stream = stub_->Stream(&context);
  bool acked_any = false;
  absl::Status refused;
  std::thread reader([&] { ReadAcks(stream.get(), &acked_any, &refused); });
  while (true) {
    std::shared_ptr<const v1::Report> report;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &StreamClient::CanWriteOrStop));
      if (closing_ || stream_broken_) {
        break;
      }
      Entry& entry = unacked_[next_unsent_++];
      if (entry.writes++ > 0) {
        ++stats_.resent;
      }
      report = entry.report;
    }
    if (!stream->Write(*report)) {
      break;
    }
  }
  // Unblocks the reader whichever side ended the stream.
  context.TryCancel();
  reader.join();
  const grpc::Status status = stream->Finish();
  absl::MutexLock lock(&mu_);
  stream_context_ = nullptr;
  if (!closing_) {
    ++stats_.stream_restarts;
    stats_.last_error = refused.ok() ? StreamEndStatus(status) : refused;
  }
  // Whatever was written but not acknowledged goes out again, in order.
  next_unsent_ = 0;
  return acked_any;
}

void StreamClient::ReadAcks(grpc::ClientReaderWriter<v1::Report, v1::Ack>* stream, bool* acked_any,
                            absl::Status* refused) {
  v1::Ack ack;
  while (stream->Read(&ack)) {
    if (ack.code() == static_cast<int>(absl::StatusCode::kUnavailable)) {
      // The daemon did not take the report (it is shutting down): drop this
      // stream and resend everything unacknowledged, in order, to the next.
      *refused = absl::UnavailableError(ack.message());
      break;
    }
    std::shared_ptr<const v1::Report> report;
    {
      absl::MutexLock lock(&mu_);
      // Acks name their report by (run_id, rank, seq, step): take the oldest
      // written report that matches. A daemon that leaves run_id empty (an
      // older release) is matched on seq and step, else on seq alone.
      size_t match = next_unsent_;
      for (size_t i = 0; i < next_unsent_; ++i) {
        const v1::Report& candidate = *unacked_[i].report;
        if (!ack.run_id().empty()) {
          if (candidate.run_id() == ack.run_id() && candidate.rank() == ack.rank() &&
              candidate.seq() == ack.seq() && candidate.step() == ack.step()) {
            match = i;
            break;
          }
          continue;
        }
        if (candidate.seq() == ack.seq()) {
          if (candidate.step() == ack.step()) {
            match = i;
            break;
          }
          if (match == next_unsent_) {
            match = i;
          }
        }
      }
      if (match == next_unsent_) {
        ++stats_.unmatched_acks;
        continue;
      }
      report = std::move(unacked_[match].report);
      unacked_bytes_ -= unacked_[match].bytes;
      unacked_.erase(unacked_.begin() + static_cast<std::ptrdiff_t>(match));
      --next_unsent_;
      ++stats_.acknowledged;
      if (ack.code() != 0) {
        ++stats_.rejected;
      }
      latest_ack_ = ack;
      ++callbacks_running_;
      *acked_any = true;
    }
    if (options_.on_ack) {
      options_.on_ack(*report, ack);
    }
    absl::MutexLock lock(&mu_);
    --callbacks_running_;
  }
  absl::MutexLock lock(&mu_);
  stream_broken_ = true;
}

}  // namespace entrowatch::client

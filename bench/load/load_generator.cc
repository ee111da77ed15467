#include "load_generator.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/proto_utils.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "entrowatch/v1/entrowatch.pb.h"
#include "proc_stats.h"

namespace entrowatch::load {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr char kStreamMethod[] = "/entrowatch.v1.Monitor/Stream";
constexpr char kSubmitMethod[] = "/entrowatch.v1.Monitor/Submit";
constexpr char kGetRunMethod[] = "/entrowatch.v1.Monitor/GetRun";
constexpr absl::Duration kSamplePeriod = absl::Milliseconds(100);
constexpr absl::Duration kCancelGrace = absl::Seconds(5);

enum class Phase { kWarmup, kMeasuring, kDraining };

// What every stream reads; shared so that a stream gRPC never let go of
// cannot outlive it.
struct SharedState {
  explicit SharedState(const PayloadOptions& options) : payload(options) {}
  const PayloadFactory payload;
  std::atomic<Phase> phase{Phase::kWarmup};
};

double MillisBetween(SteadyClock::time_point a, SteadyClock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

struct StreamCounters {
  int64_t sent = 0;     // distinct reports written
  int64_t resent = 0;   // written again on a later stream
  int64_t refused = 0;  // Acks with UNAVAILABLE: not taken, resent later
  int64_t acked = 0;
  int64_t ok = 0;
  int64_t duplicate = 0;
  int64_t late = 0;
  int64_t unmatched = 0;
  int64_t logits_acked = 0;
  int64_t window_reports = 0;
  int64_t window_bytes = 0;
  std::map<int, int64_t> errors;
  std::vector<float> latencies_ms;  // Acks received while measuring
};

// Where a replacement stream of a (run, rank) picks up: the last step
// written and the reports not yet acknowledged (resent first, in order,
// keeping their first send time so latency includes the retry).
struct InFlight {
  SteadyClock::time_point sent;
  int64_t bytes = 0;
  bool logits = false;
};
struct Resume {
  uint64_t step = 0;
  std::map<uint64_t, InFlight> unacked;
};

// One (run, rank) on one call: writes consecutive steps, at most `window`
// unacknowledged, one write at a time (the gRPC rule), and reads Acks
// continuously. A hold keeps OnDone back until this side has stopped
// writing, so Stop() may start WritesDone from the main thread. Like the
// clients, it treats an UNAVAILABLE Ack as "not taken": the call is given
// up and the driver resends on a new one (see Resumable).
class LoadStream final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  LoadStream(std::shared_ptr<const SharedState> shared, StreamIdentity id, int window,
             Resume resume = Resume(), bool stopped = false)
      : shared_(std::move(shared)),
        id_(std::move(id)),
        window_(static_cast<size_t>(window)),
        step_(resume.step),
        in_flight_(std::move(resume.unacked)),
        stopped_(stopped) {
    for (const auto& [step, entry] : in_flight_) {
      to_resend_.push_back(step);
    }
  }

  void Start(grpc::GenericStub* stub) {
    stub->PrepareBidiStreamingCall(&context_, kStreamMethod, grpc::StubOptions(), this);
    AddHold();
    StartRead(&incoming_);
    StartCall();
    Pump();
  }

  // No report after this one; WritesDone once every Ack is in.
  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      stopped_ = true;
    }
    Pump();
  }

  void Cancel() { context_.TryCancel(); }

  bool done() const {
    absl::MutexLock lock(&mu_);
    return done_;
  }

  bool WaitDone(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&done_), timeout);
  }

  // Final once WaitDone() returned true.
  StreamCounters counters() const {
    absl::MutexLock lock(&mu_);
    return counters_;
  }
  grpc::Status status() const {
    absl::MutexLock lock(&mu_);
    return status_;
  }
  // After WaitDone(): where a replacement call continues.
  Resume resume() const {
    absl::MutexLock lock(&mu_);
    Resume r;
    r.step = step_;
    r.unacked = in_flight_;
    return r;
  }
  // After WaitDone(): the daemon refused a report or ended the call over
  // capacity or shutting down, with reports left to send.
  bool ShouldResume() const {
    absl::MutexLock lock(&mu_);
    const bool retryable = refused_ ||
                           status_.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ||
                           status_.error_code() == grpc::StatusCode::UNAVAILABLE;
    return retryable && (!stopped_ || !in_flight_.empty());
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (ok) {
        counters_.resent += resending_ ? 1 : 0;
      } else {
        broken_ = true;
      }
    }
    Pump();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      {
        absl::MutexLock lock(&mu_);
        broken_ = true;
      }
      Pump();
      return;
    }
    entrowatch::v1::Ack ack;
    const bool parsed =
        grpc::SerializationTraits<entrowatch::v1::Ack>::Deserialize(&incoming_, &ack).ok();
    const auto now = SteadyClock::now();
    {
      absl::MutexLock lock(&mu_);
      Record(parsed, ack, now);
    }
    StartRead(&incoming_);
    Pump();
  }

  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    done_ = true;
  }

 private:
  void Record(bool parsed, const entrowatch::v1::Ack& ack, SteadyClock::time_point now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = parsed ? in_flight_.find(ack.seq()) : in_flight_.end();
    if (it == in_flight_.end()) {
      ++counters_.unmatched;
      return;
    }
    if (ack.code() == static_cast<int>(grpc::StatusCode::UNAVAILABLE)) {
      // Not taken: stays in flight for the next call; this one is given up.
      ++counters_.refused;
      refused_ = true;
      broken_ = true;
      return;
    }
    ++counters_.acked;
    if (ack.code() != 0) {
      ++counters_.errors[ack.code()];
    } else if (ack.duplicate()) {
      ++counters_.duplicate;
    } else if (ack.late()) {
      ++counters_.late;
    } else {
      ++counters_.ok;
    }
    counters_.logits_acked += it->second.logits ? 1 : 0;
    if (shared_->phase.load(std::memory_order_relaxed) == Phase::kMeasuring) {
      ++counters_.window_reports;
      counters_.window_bytes += it->second.bytes;
      counters_.latencies_ms.push_back(static_cast<float>(MillisBetween(it->second.sent, now)));
    }
    in_flight_.erase(it);
  }

  // Starts the next write, WritesDone, or gives up the hold, as the state
  // allows. Called after every event; never holds mu_ across a gRPC call.
  void Pump() {
    enum class Action { kNone, kWrite, kWritesDone, kRelease } action = Action::kNone;
    {
      absl::MutexLock lock(&mu_);
      if (hold_released_ || writing_) {
        return;
      }
      if (broken_) {
        action = Action::kRelease;
      } else if (!to_resend_.empty()) {
        const uint64_t step = to_resend_.front();
        to_resend_.pop_front();
        const InFlight& entry = in_flight_.at(step);
        int64_t bytes = 0;
        outgoing_ = shared_->payload.Build(id_, step, /*seq=*/step, entry.logits, &bytes);
        resending_ = true;
        writing_ = true;
        action = Action::kWrite;
      } else if (stopped_) {
        if (in_flight_.empty()) {
          action = Action::kWritesDone;
        }
      } else if (in_flight_.size() < window_) {
        // Counted once, when first written, whether or not that write (or
        // its call) completes: a report is sent once and resent as needed.
        ++counters_.sent;
        resending_ = false;
        ++step_;
        const bool logits = shared_->payload.HasLogits(id_, step_);
        InFlight entry;
        entry.logits = logits;
        outgoing_ = shared_->payload.Build(id_, step_, /*seq=*/step_, logits, &entry.bytes);
        entry.sent = SteadyClock::now();
        in_flight_.emplace(step_, entry);
        writing_ = true;
        action = Action::kWrite;
      }
      if (action == Action::kWritesDone || action == Action::kRelease) {
        hold_released_ = true;
      }
    }
    switch (action) {
      case Action::kWrite:
        StartWrite(&outgoing_);
        break;
      case Action::kWritesDone:
        StartWritesDone();
        RemoveHold();
        break;
      case Action::kRelease:
        RemoveHold();
        break;
      case Action::kNone:
        break;
    }
  }

  const std::shared_ptr<const SharedState> shared_;
  const StreamIdentity id_;
  const size_t window_;
  grpc::ClientContext context_;
  grpc::ByteBuffer incoming_;  // one read at a time
  grpc::ByteBuffer outgoing_;  // one write at a time
  mutable absl::Mutex mu_;
  uint64_t step_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, InFlight> in_flight_ ABSL_GUARDED_BY(mu_);
  std::deque<uint64_t> to_resend_ ABSL_GUARDED_BY(mu_);
  bool resending_ ABSL_GUARDED_BY(mu_) = false;  // the current write is a resend
  bool refused_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_released_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  StreamCounters counters_ ABSL_GUARDED_BY(mu_);
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

// One (run, rank) over successive calls: when the daemon pushes back (a
// report answered UNAVAILABLE, the call ended RESOURCE_EXHAUSTED or
// UNAVAILABLE), a new call resends what was not acknowledged after a
// jittered exponential backoff, as the clients do.
class Resumable {
 public:
  Resumable(std::shared_ptr<const SharedState> shared, StreamIdentity id, int window,
            grpc::GenericStub* stub)
      : shared_(std::move(shared)), id_(std::move(id)), window_(window), stub_(stub) {
    calls_.push_back(std::make_unique<LoadStream>(shared_, id_, window_));
    calls_.back()->Start(stub_);
  }

  // Starts a replacement call when one is due. Called periodically.
  void Tick(SteadyClock::time_point now) {
    LoadStream& call = *calls_.back();
    if (!call.done() || !call.ShouldResume()) {
      return;
    }
    if (next_try_ == SteadyClock::time_point()) {
      const double base_ms =
          std::min(5000.0, 200.0 * static_cast<double>(1 << std::min(failures_, 6)));
      std::uniform_real_distribution<double> jitter(0.8, 1.2);
      next_try_ =
          now + std::chrono::microseconds(static_cast<int64_t>(base_ms * 1000 * jitter(rng_)));
      ++failures_;
      return;
    }
    if (now < next_try_) {
      return;
    }
    next_try_ = SteadyClock::time_point();
    calls_.push_back(std::make_unique<LoadStream>(shared_, id_, window_, call.resume(), stopped_));
    calls_.back()->Start(stub_);
    ++restarts_;
  }

  void Stop() {
    stopped_ = true;
    calls_.back()->Stop();
  }
  bool Done() const { return calls_.back()->done() && !calls_.back()->ShouldResume(); }
  // Gives up: cancels the current call. True once gRPC let go of it.
  bool Cancel() {
    calls_.back()->Cancel();
    return calls_.back()->WaitDone(kCancelGrace);
  }
  // Every call, oldest first (valid once Done() or after Cancel()).
  const std::vector<std::unique_ptr<LoadStream>>& calls() const { return calls_; }
  int64_t restarts() const { return restarts_; }
  grpc::Status status() const { return calls_.back()->status(); }
  const StreamIdentity& id() const { return id_; }

 private:
  const std::shared_ptr<const SharedState> shared_;
  const StreamIdentity id_;
  const int window_;
  grpc::GenericStub* const stub_;
  std::vector<std::unique_ptr<LoadStream>> calls_;
  bool stopped_ = false;
  int failures_ = 0;
  int64_t restarts_ = 0;
  SteadyClock::time_point next_try_;
  std::minstd_rand rng_{static_cast<uint32_t>(std::hash<std::string>{}(id_.run_id) + id_.rank)};
};

std::vector<std::shared_ptr<grpc::Channel>> Connect(const LoadOptions& options,
                                                    absl::Status* status) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  const int count =
      std::max(1, std::min(options.channels, std::max(options.streams, options.submit_burst)));
  const auto deadline =
      std::chrono::system_clock::now() +
      std::chrono::milliseconds(static_cast<int64_t>(options.connect_seconds * 1000));
  for (int i = 0; i < count; ++i) {
    grpc::ChannelArguments args;
    // Distinct arguments and a local pool: one TCP connection per channel.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("entrowatch.load.channel", i);
    auto channel =
        grpc::CreateCustomChannel(options.target, grpc::InsecureChannelCredentials(), args);
    if (!channel->WaitForConnected(deadline)) {
      *status = absl::UnavailableError(absl::StrCat("cannot connect to ", options.target,
                                                    " within ", options.connect_seconds, " s"));
      return {};
    }
    channels.push_back(std::move(channel));
  }
  return channels;
}

StreamIdentity IdentityOf(const LoadOptions& options, int index) {
  const int per_run = std::max(1, options.ranks_per_run);
  const int run = index / per_run;
  StreamIdentity id;
  id.run_id = absl::StrCat(options.run_prefix, "-", run);
  id.rank = static_cast<uint32_t>(index % per_run);
  id.world_size = static_cast<uint32_t>(std::min(per_run, options.streams - run * per_run));
  id.index = index;
  return id;
}

void Merge(const StreamCounters& c, LoadResult* result, std::vector<float>* latencies) {
  result->reports_sent += c.sent;
  result->reports_resent += c.resent;
  result->acks_refused += c.refused;
  result->reports_acked += c.acked;
  result->acks_ok += c.ok;
  result->acks_duplicate += c.duplicate;
  result->acks_late += c.late;
  result->acks_unmatched += c.unmatched;
  result->logits_reports_acked += c.logits_acked;
  result->window_reports += c.window_reports;
  result->window_bytes += c.window_bytes;
  for (const auto& [code, count] : c.errors) {
    result->ack_errors[code] += count;
  }
  latencies->insert(latencies->end(), c.latencies_ms.begin(), c.latencies_ms.end());
}

double Percentile(std::vector<float>* values, double q) {
  if (values->empty()) {
    return 0;
  }
  const size_t k = std::min(values->size() - 1, static_cast<size_t>(q * values->size()));
  std::nth_element(values->begin(), values->begin() + static_cast<std::ptrdiff_t>(k),
                   values->end());
  return (*values)[k];
}

// Concurrent unary Submits with a logits block each; records their status codes.
// Calls `sample` every sample period while waiting.
void SubmitBurst(const LoadOptions& options, const PayloadFactory& payload,
                 const std::vector<std::unique_ptr<grpc::GenericStub>>& stubs,
                 const std::function<void()>& sample, LoadResult* result) {
  struct Call {
    grpc::ClientContext context;
    grpc::ByteBuffer request;
    grpc::ByteBuffer response;
  };
  const int n = options.submit_burst;
  std::vector<std::unique_ptr<Call>> calls;
  absl::Mutex mu;
  int finished = 0;
  StreamIdentity id;
  id.run_id = absl::StrCat(options.run_prefix, "-burst");
  const auto deadline =
      std::chrono::system_clock::now() +
      std::chrono::milliseconds(static_cast<int64_t>(options.drain_seconds * 1000));
  for (int i = 0; i < n; ++i) {
    auto call = std::make_unique<Call>();
    int64_t bytes = 0;
    call->request = payload.Build(id, static_cast<uint64_t>(i + 1), static_cast<uint64_t>(i + 1),
                                  /*with_logits=*/true, &bytes);
    call->context.set_deadline(deadline);
    calls.push_back(std::move(call));
  }
  for (size_t i = 0; i < calls.size(); ++i) {
    Call* call = calls[i].get();
    stubs[i % stubs.size()]->UnaryCall(
        &call->context, kSubmitMethod, grpc::StubOptions(), &call->request, &call->response,
        [&mu, &finished, result](grpc::Status status) {
          absl::MutexLock lock(&mu);
          ++result->submit_codes[static_cast<int>(status.error_code())];
          ++finished;
        });
  }
  // Every call carries the deadline, so each completes by then.
  auto all_done = [&finished, n]() { return finished == n; };
  for (;;) {
    {
      absl::MutexLock lock(&mu);
      if (mu.AwaitWithTimeout(absl::Condition(&all_done), kSamplePeriod)) {
        return;
      }
    }
    sample();
  }
}

// Compares, run by run, the reports acknowledged with what the server holds
// (Monitor.GetRun: accepted + late; duplicates are reports it already held).
void VerifyRuns(const std::map<std::string, int64_t>& acked_by_run, double timeout_seconds,
                grpc::GenericStub* stub, LoadResult* result) {
  for (const auto& [run_id, acked] : acked_by_run) {
    entrowatch::v1::GetRunRequest request;
    request.set_run_id(run_id);
    grpc::ByteBuffer request_bytes;
    bool own_buffer = false;
    grpc::SerializationTraits<entrowatch::v1::GetRunRequest>::Serialize(request, &request_bytes,
                                                                        &own_buffer)
        .IgnoreError();
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000)));
    grpc::ByteBuffer response_bytes;
    absl::Mutex mu;
    bool done = false;
    grpc::Status status;
    stub->UnaryCall(&context, kGetRunMethod, grpc::StubOptions(), &request_bytes, &response_bytes,
                    [&](grpc::Status s) {
                      absl::MutexLock lock(&mu);
                      status = std::move(s);
                      done = true;
                    });
    {
      absl::MutexLock lock(&mu);
      mu.Await(absl::Condition(&done));  // the deadline bounds the wait
    }
    entrowatch::v1::RunStatus run;
    if (status.ok() &&
        !grpc::SerializationTraits<entrowatch::v1::RunStatus>::Deserialize(&response_bytes, &run)
             .ok()) {
      status = grpc::Status(grpc::StatusCode::INTERNAL, "cannot parse RunStatus");
    }
    if (!status.ok()) {
      if (result->verify_error.empty()) {
        result->verify_error =
            absl::StrCat("GetRun ", run_id, ": code ", static_cast<int>(status.error_code()), ": ",
                         status.error_message());
      }
      result->acked_missing += acked;
      continue;
    }
    ++result->runs_verified;
    const int64_t held = static_cast<int64_t>(run.reports_accepted() + run.reports_late());
    result->acked_missing += std::max<int64_t>(0, acked - held);
  }
}

}  // namespace

absl::StatusOr<LoadResult> RunLoad(const LoadOptions& options) {
  absl::Status connect_status;
  auto channels = Connect(options, &connect_status);
  if (!connect_status.ok()) {
    return connect_status;
  }
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs;
  for (const auto& channel : channels) {
    stubs.push_back(std::make_unique<grpc::GenericStub>(channel));
  }
  auto shared = std::make_shared<SharedState>(options.payload);
  std::atomic<Phase>& phase = shared->phase;
  LoadResult result;

  auto sample_server = [&options, &result]() -> absl::StatusOr<ProcSample> {
    if (options.server_pid == 0) {
      return ProcSample();
    }
    auto sample = ReadProcSample(options.server_pid);
    if (sample.ok()) {
      result.server_rss_max_bytes = std::max(result.server_rss_max_bytes, sample->rss_bytes);
    }
    return sample;
  };
  auto watching = [&options]() { return options.server_pid != 0; };

  std::vector<std::unique_ptr<Resumable>> streams;
  const auto start = SteadyClock::now();
  for (int i = 0; i < options.streams; ++i) {
    streams.push_back(
        std::make_unique<Resumable>(shared, IdentityOf(options, i), std::max(1, options.window),
                                    stubs[static_cast<size_t>(i) % stubs.size()].get()));
  }
  auto tick = [&streams]() {
    const auto now = SteadyClock::now();
    for (auto& stream : streams) {
      stream->Tick(now);
    }
  };
  const auto warmup_end =
      start + std::chrono::milliseconds(static_cast<int64_t>(options.warmup_seconds * 1000));
  const auto send_end =
      start + std::chrono::milliseconds(static_cast<int64_t>(options.duration_seconds * 1000));
  SteadyClock::time_point measure_start = send_end;
  double cpu_at_start = 0;
  while (SteadyClock::now() < send_end) {
    absl::SleepFor(kSamplePeriod);
    tick();
    auto sample = sample_server();
    if (!sample.ok()) {
      return absl::Status(sample.status().code(),
                          absl::StrCat("server process: ", sample.status().message()));
    }
    if (phase.load() == Phase::kWarmup && SteadyClock::now() >= warmup_end) {
      phase.store(Phase::kMeasuring);
      measure_start = SteadyClock::now();
      cpu_at_start = sample->cpu_seconds;
    }
    if (options.max_server_rss_bytes > 0 && sample->rss_bytes > options.max_server_rss_bytes) {
      result.stopped_early = true;
      break;
    }
  }
  const auto measure_end = SteadyClock::now();
  const bool measured = phase.exchange(Phase::kDraining) == Phase::kMeasuring;
  if (measured) {
    result.window_seconds = MillisBetween(measure_start, measure_end) / 1000;
    if (watching()) {
      auto sample = sample_server();
      if (sample.ok()) {
        result.server_cpu_seconds = sample->cpu_seconds - cpu_at_start;
        result.server_rss_end_bytes = sample->rss_bytes;
      }
    }
  }
  for (auto& stream : streams) {
    stream->Stop();
  }
  const absl::Time drain_deadline = absl::Now() + absl::Seconds(options.drain_seconds);
  auto all_done = [&streams]() {
    return std::all_of(streams.begin(), streams.end(), [](const auto& s) { return s->Done(); });
  };
  while (!all_done() && absl::Now() < drain_deadline) {
    absl::SleepFor(kSamplePeriod);
    tick();
    sample_server().IgnoreError();
  }
  std::vector<float> latencies;
  std::map<std::string, int64_t> acked_by_run;
  int64_t abandoned = 0;
  for (auto& stream : streams) {
    if (!stream->Done() && !stream->Cancel()) {
      // gRPC still owns the call: leave the reactor (and what it shares)
      // alive rather than free it under gRPC.
      stream.release();
      ++abandoned;
      continue;
    }
    for (const auto& call : stream->calls()) {
      const StreamCounters counters = call->counters();
      acked_by_run[stream->id().run_id] += counters.ok + counters.duplicate + counters.late;
      Merge(counters, &result, &latencies);
    }
    result.stream_restarts += stream->restarts();
    const grpc::Status status = stream->status();
    if (!status.ok()) {
      ++result.streams_failed;
      if (result.first_stream_error.empty()) {
        result.first_stream_error = absl::StrCat("code ", static_cast<int>(status.error_code()),
                                                 ": ", status.error_message());
      }
    }
  }
  result.streams_failed += abandoned;
  result.latency_p50_ms = Percentile(&latencies, 0.50);
  result.latency_p99_ms = Percentile(&latencies, 0.99);
  result.latency_max_ms =
      latencies.empty() ? 0 : *std::max_element(latencies.begin(), latencies.end());
  if (options.verify_runs) {
    VerifyRuns(acked_by_run, options.drain_seconds, stubs.front().get(), &result);
  }
  if (options.submit_burst > 0) {
    SubmitBurst(
        options, shared->payload, stubs, [&sample_server]() { sample_server().IgnoreError(); },
        &result);
  }
  if (watching()) {
    auto sample = sample_server();
    if (sample.ok()) {
      result.server_rss_hwm_bytes = sample->peak_rss_bytes;
    }
  }
  return result;
}

}  // namespace entrowatch::load

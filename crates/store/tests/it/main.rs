//! The store suite. Every test in it is a generic async function over a fresh `TestDb`, run
//! once per backend by `suite!`; backend-specific checks live in `sqlite` and `postgres`.

mod api_keys;
mod audit;
mod deliveries;
mod events;
mod flow;
mod fresh;
mod group_commit;
mod idempotency;
mod ordering;
mod out_of_space;
mod postgres;
mod resources;
mod secrets;
mod settle;
mod sources;
mod sqlite;
mod streams;
mod support;
mod unfinished;
mod upkeep;

/// Instantiates each listed suite function as a `#[tokio::test]` against one backend.
/// `on_threads` runs them on two worker threads, for the tests of races that one thread,
/// which switches tasks only where they wait, cannot show.
macro_rules! instantiate {
    ($connect:path; $($module:ident :: $test:ident),* $(,)?) => {
        instantiate!(@with [tokio::test]; $connect; $($module::$test),*);
    };
    (on_threads $connect:path; $($module:ident :: $test:ident),* $(,)?) => {
        instantiate!(@with [tokio::test(flavor = "multi_thread", worker_threads = 2)]; $connect; $($module::$test),*);
    };
    (@with [$runtime:meta]; $connect:path; $($module:ident :: $test:ident),*) => {
        $(
            #[$runtime]
            async fn $test() {
                // `None`: the backend is unreachable outside CI, and said so.
                let Some(db) = $connect().await else { return };
                crate::$module::$test(db).await;
            }
        )*
    };
}

/// The suite, written once; a backend joins it with one `suite!` line below.
macro_rules! suite {
    ($backend:ident, $connect:path) => {
        mod $backend {
            instantiate!($connect;
                events::ingest_stores_the_event_and_routes_deliveries,
                events::disabled_and_unmatched_subscriptions_get_no_delivery,
                events::an_ingest_says_whether_it_created_deliveries,
                events::ingest_across_calls_detects_duplicates_and_conflicts,
                events::ingest_within_one_call_detects_duplicates_and_conflicts,
                events::failed_ingest_writes_nothing,
                events::a_large_call_keeps_request_order_and_finds_repeats_across_its_chunks,
                events::keyset_paging_returns_every_event_once_in_order,
                events::keyset_paging_honours_filters,
                events::numbered_pages_carry_totals_and_cursors,
                events::event_filters_bound_time_and_match_exactly,
                events::the_links_of_a_flow_come_in_ingest_order_up_to_the_limit,
                events::the_publisher_round_trips_with_its_request_id,
                events::forwarded_headers_round_trip_and_absent_ones_stay_absent,
                resources::destinations_round_trip_and_update_optimistically,
                resources::destination_delete_is_refused_while_subscribed,
                resources::destinations_list_in_creation_order_with_totals,
                resources::subscriptions_need_an_existing_destination,
                resources::subscriptions_round_trip_update_and_filter,
                resources::event_types_round_trip_update_and_list_by_name,
                sources::sources_round_trip_and_update_optimistically,
                sources::sources_list_in_creation_order_with_totals,
                sources::a_destinations_sealed_secrets_do_not_open_as_a_sources,
                sources::source_secrets_in_clear_are_refused,
                api_keys::api_keys_are_found_revoked_and_counted,
                api_keys::api_keys_list_active_keys_oldest_first,
                idempotency::claims_progress_to_a_replayable_response,
                idempotency::released_keys_can_be_claimed_again,
                idempotency::stale_records_are_forgotten_at_the_cutoff,
                idempotency::abandoned_claims_are_forgotten_before_responses_expire,
                deliveries::claims_lease_only_due_deliveries_up_to_the_limit,
                deliveries::claims_skip_paused_and_missing_destinations,
                deliveries::expired_leases_are_reclaimed_and_live_ones_are_not,
                deliveries::claims_go_around_a_held_backlog_in_due_order,
                deliveries::claims_around_a_held_backlog_break_ties_by_ingest_order,
                deliveries::concurrent_claimers_never_share_a_delivery,
                deliveries::concurrent_claimers_around_a_held_backlog_never_share_a_delivery,
                deliveries::attempts_move_the_delivery_and_are_numbered_across_retries,
                deliveries::record_attempt_needs_the_lease,
                deliveries::release_leases_hands_back_only_the_owners,
                deliveries::renewed_leases_outlive_their_first_expiry_and_only_the_named_ones_move,
                deliveries::next_due_at_names_the_earliest_claimable_time,
                deliveries::delivery_listings_filter_and_page,
                deliveries::retry_delivery_refuses_in_flight_and_succeeded,
                deliveries::replay_dead_honours_filters_and_limits,
                deliveries::tallies_count_every_destinations_deliveries_at_once,
                deliveries::prune_removes_only_old_finished_deliveries_and_orphaned_events,
                unfinished::claims_count_each_lease_and_a_recorded_attempt_of_any_outcome_resets_it,
                unfinished::leases_handed_back_unused_do_not_count,
                fresh::a_fresh_lease_leases_at_most_its_max_and_never_an_ordered_delivery,
                fresh::a_fresh_lease_is_a_claims_lease_from_then_on,
                ordering::ordered_claims_take_the_head_of_each_key_in_ingest_order,
                ordering::ordered_claims_take_the_same_heads_around_a_held_backlog,
                ordering::unordered_subscriptions_and_keyless_events_are_not_held,
                ordering::block_on_dead_holds_the_key_until_the_dead_one_is_replayed,
                ordering::a_key_never_has_two_deliveries_in_flight,
                ordering::filtered_deliveries_are_final_and_release_their_key,
                flow::a_closed_circuit_admits_everything_without_writing,
                flow::recorded_failures_open_the_circuit_and_deferral_spends_no_attempt,
                flow::a_changed_policy_applies_to_the_next_attempt,
                flow::one_probe_goes_at_a_time_across_nodes_and_its_verdict_decides,
                flow::rate_tokens_are_shared_between_nodes_and_refill,
                flow::deleting_a_destination_drops_its_flow_record,
                audit::audit_entries_round_trip_in_append_order,
                audit::audit_log_pages_by_cursor_and_filters,
                secrets::secrets_are_sealed_at_rest_and_plain_in_memory,
                secrets::a_sealed_value_moved_to_another_row_does_not_open,
                secrets::a_missing_key_is_a_clear_error_naming_it,
                secrets::plaintext_from_before_sealing_is_read_then_sealed,
                secrets::rotation_reseals_everything_under_the_new_key,
                secrets::a_rotation_that_cannot_open_a_value_changes_nothing,
                secrets::source_secrets_are_counted_and_resealed_on_rotation,
                upkeep::audit_entries_past_retention_are_pruned_in_batches,
                upkeep::idempotency_records_past_retention_are_pruned_in_batches,
                upkeep::held_outcomes_are_written_without_a_further_attempt,
                upkeep::held_outcomes_of_a_deleted_destination_are_dropped,
                streams::the_events_stream_reads_every_event_once_in_order,
                streams::the_deliveries_stream_reads_status_changes_compacted,
            );
            instantiate!(on_threads $connect;
                flow::concurrent_attempts_all_reach_the_circuit_counts,
                settle::concurrent_records_each_settle_their_delivery_or_nothing,
                settle::concurrent_records_promote_the_next_of_each_key,
                settle::a_failing_record_among_many_fails_alone,
                settle::a_failing_record_among_successes_leaves_each_other_counted_once,
                settle::the_circuit_opens_when_its_failures_arrive_together,
                settle::each_change_of_a_circuit_is_answered_to_one_record,
            );
        }
    };
}

suite!(on_sqlite, crate::support::TestDb::sqlite_for_suite);
suite!(on_postgres, crate::support::TestDb::postgres);

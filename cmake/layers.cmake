# The dependency direction of entrowatch's libraries, checked when CMake
# configures the tree (docs/architecture.md explains the layers).
#
#   entrowatch_layer(TARGET [USES lib...] [NEVER lib-or-package...])
#
# USES lists the libraries of ours that TARGET may link directly; linking any
# other library of ours fails the configure step. NEVER lists what TARGET may
# not reach at all, directly or through what it links: a library of ours, or
# every target of a package when written as its namespace (gRPC::, CURL::).
# Every library that the check walks (the top-level CMakeLists.txt passes
# proto/, src/ and clients/cpp/) must have a line.
# A line for a target that does not exist is ignored.

set(ENTROWATCH_LAYERED_TARGETS "")

function(entrowatch_layer target)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "USES;NEVER")
  set_property(GLOBAL APPEND PROPERTY ENTROWATCH_LAYERED_TARGETS ${target})
  set_property(GLOBAL PROPERTY ENTROWATCH_USES_${target} ${arg_USES})
  set_property(GLOBAL PROPERTY ENTROWATCH_NEVER_${target} ${arg_NEVER})
endfunction()

# entrowatch_tolerate(TARGET lib...): edges the rules above refuse but the
# tree still has while a change is under way. Each is printed at configure
# time, and a line whose edge is gone fails the check, so the list only
# shrinks.
function(entrowatch_tolerate target)
  set_property(GLOBAL APPEND PROPERTY ENTROWATCH_TOLERATED_${target} ${ARGN})
endfunction()

# The libraries (of ours or packages) that `target` links, as written in
# LINK_LIBRARIES and INTERFACE_LINK_LIBRARIES; generator expressions other
# than $<LINK_ONLY:...> are skipped.
function(_entrowatch_direct_links target out_var)
  set(links "")
  get_target_property(type ${target} TYPE)
  if(NOT type STREQUAL "INTERFACE_LIBRARY")
    get_target_property(private ${target} LINK_LIBRARIES)
    if(private)
      list(APPEND links ${private})
    endif()
  endif()
  get_target_property(interface ${target} INTERFACE_LINK_LIBRARIES)
  if(interface)
    list(APPEND links ${interface})
  endif()
  set(result "")
  foreach(link IN LISTS links)
    if(link MATCHES "^\\$<LINK_ONLY:(.+)>$")
      set(link "${CMAKE_MATCH_1}")
    endif()
    if(link MATCHES "^\\$<" OR link MATCHES "^-")
      continue()
    endif()
    if(TARGET ${link})
      get_target_property(aliased ${link} ALIASED_TARGET)
      if(aliased)
        set(link ${aliased})
      endif()
    endif()
    list(APPEND result ${link})
  endforeach()
  list(REMOVE_DUPLICATES result)
  set(${out_var} ${result} PARENT_SCOPE)
endfunction()

function(_entrowatch_is_ours target out_var)
  set(ours FALSE)
  if(TARGET ${target})
    get_target_property(imported ${target} IMPORTED)
    if(NOT imported AND target MATCHES "^entrowatch_")
      set(ours TRUE)
    endif()
  endif()
  set(${out_var} ${ours} PARENT_SCOPE)
endfunction()

# Our libraries defined under `dir` and its subdirectories.
function(_entrowatch_libraries_under dir out_var)
  set(result "")
  get_property(targets DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
  foreach(target IN LISTS targets)
    get_target_property(type ${target} TYPE)
    if(type MATCHES "LIBRARY$")
      list(APPEND result ${target})
    endif()
  endforeach()
  get_property(subdirs DIRECTORY ${dir} PROPERTY SUBDIRECTORIES)
  foreach(subdir IN LISTS subdirs)
    _entrowatch_libraries_under(${subdir} more)
    list(APPEND result ${more})
  endforeach()
  set(${out_var} ${result} PARENT_SCOPE)
endfunction()

# entrowatch_check_layers(dir...): fails the configure step with every
# broken rule of the libraries defined under the given directories (relative
# to the project's source directory).
function(entrowatch_check_layers)
  set(errors "")
  get_property(layered GLOBAL PROPERTY ENTROWATCH_LAYERED_TARGETS)
  set(libraries "")
  foreach(dir IN LISTS ARGN)
    _entrowatch_libraries_under(${PROJECT_SOURCE_DIR}/${dir} found)
    list(APPEND libraries ${found})
  endforeach()

  foreach(target IN LISTS libraries)
    if(NOT target IN_LIST layered)
      string(APPEND errors "  ${target} has no entrowatch_layer() line in cmake/layers.cmake\n")
      continue()
    endif()
    get_property(uses GLOBAL PROPERTY ENTROWATCH_USES_${target})
    get_property(never GLOBAL PROPERTY ENTROWATCH_NEVER_${target})
    get_property(tolerated GLOBAL PROPERTY ENTROWATCH_TOLERATED_${target})
    set(used_tolerations "")

    _entrowatch_direct_links(${target} direct)
    foreach(link IN LISTS direct)
      _entrowatch_is_ours(${link} ours)
      if(ours AND NOT link IN_LIST uses)
        if(link IN_LIST tolerated)
          list(APPEND used_tolerations ${link})
        else()
          string(APPEND errors "  ${target} links ${link}, which is not in its USES list\n")
        endif()
      endif()
    endforeach()

    # Everything reachable from `target`, each with the path that reaches it;
    # tolerated edges are not followed.
    set(queue "")
    foreach(link IN LISTS direct)
      if(NOT link IN_LIST tolerated)
        list(APPEND queue ${link})
        set(_path_${link} "${target} -> ${link}")
      endif()
    endforeach()
    set(seen ${queue})
    set(broken "")
    while(queue)
      list(POP_FRONT queue current)
      foreach(rule IN LISTS never)
        if(rule MATCHES "::$")
          string(FIND "${current}" "${rule}" at)
          set(hit FALSE)
          if(at EQUAL 0)
            set(hit TRUE)
          endif()
        else()
          string(COMPARE EQUAL "${current}" "${rule}" hit)
        endif()
        if(hit AND NOT rule IN_LIST broken)
          list(APPEND broken ${rule})
          set(shown ${rule})
          if(rule MATCHES "::$")
            set(shown "${rule}*")
          endif()
          string(APPEND errors "  ${target} must never reach ${shown}: ${_path_${current}}\n")
        endif()
      endforeach()
      if(TARGET ${current})
        _entrowatch_direct_links(${current} next)
        foreach(link IN LISTS next)
          if(NOT link IN_LIST seen)
            list(APPEND seen ${link})
            list(APPEND queue ${link})
            set(_path_${link} "${_path_${current}} -> ${link}")
          endif()
        endforeach()
      endif()
    endwhile()

    foreach(link IN LISTS tolerated)
      if(NOT link IN_LIST direct)
        string(APPEND errors "  ${target} no longer links ${link}: delete that "
                             "entrowatch_tolerate() entry in cmake/layers.cmake\n")
      elseif(TARGET ${link})
        message(STATUS "entrowatch: tolerated dependency ${target} -> ${link}")
      endif()
    endforeach()
  endforeach()

  if(errors)
    message(FATAL_ERROR "entrowatch: the libraries break the dependency rules "
                        "(cmake/layers.cmake, docs/architecture.md):\n${errors}")
  endif()
endfunction()

# ---------------------------------------------------------------------------
# The table, lowest layer first.

# common: vocabulary types (Status helpers, clock, tensor views). Nothing of
# ours, no generated code.
entrowatch_layer(entrowatch_common NEVER protobuf:: gRPC:: CURL::)

# Generated code: the wire messages (protobuf only), the gRPC service stubs,
# and the messages private to one component.
entrowatch_layer(entrowatch_proto NEVER gRPC::)
entrowatch_layer(entrowatch_grpc USES entrowatch_proto)
entrowatch_layer(entrowatch_console_proto USES entrowatch_proto NEVER gRPC::)
entrowatch_layer(entrowatch_store_proto USES entrowatch_proto NEVER gRPC::)

# compute: the entropy engines. No gRPC, no daemon.
entrowatch_layer(entrowatch_compute USES entrowatch_common entrowatch_proto
  NEVER gRPC:: CURL:: entrowatch_grpc entrowatch_config)

# config: the typed configuration. No HTTP client, no gRPC.
entrowatch_layer(entrowatch_config USES entrowatch_common entrowatch_alertmanager_options
  NEVER CURL:: gRPC:: entrowatch_alertmanager)

# analysis: step aggregation and the health detectors.
entrowatch_layer(entrowatch_aggregation USES entrowatch_common entrowatch_proto
  entrowatch_store_proto NEVER gRPC::)
entrowatch_layer(entrowatch_health USES entrowatch_common entrowatch_config entrowatch_proto
  entrowatch_aggregation NEVER gRPC::)

# store: persistence of protos. No analysis.
entrowatch_layer(entrowatch_store USES entrowatch_common entrowatch_proto entrowatch_store_proto
  NEVER gRPC:: entrowatch_aggregation entrowatch_health)

# export: the sinks (Prometheus metrics, Alertmanager push) and the HTTP
# listener.
entrowatch_layer(entrowatch_sink USES entrowatch_proto NEVER gRPC::)
entrowatch_layer(entrowatch_alertmanager_options USES entrowatch_common NEVER CURL:: gRPC::)
entrowatch_layer(entrowatch_alertmanager USES entrowatch_common entrowatch_proto entrowatch_sink
  entrowatch_alertmanager_options NEVER gRPC::)
entrowatch_layer(entrowatch_export USES entrowatch_common entrowatch_proto entrowatch_sink
  NEVER gRPC::)

# ingest: the gRPC service, validation, admission, and the wire-to-engine
# adapter (which has no gRPC, for the CLI bench and the fuzzer).
entrowatch_layer(entrowatch_ingest_wire USES entrowatch_common entrowatch_proto NEVER gRPC::)
entrowatch_layer(entrowatch_report_adapter USES entrowatch_common entrowatch_compute
  entrowatch_aggregation entrowatch_proto entrowatch_ingest_wire NEVER gRPC::)
entrowatch_layer(entrowatch_ingest USES entrowatch_common entrowatch_compute entrowatch_config
  entrowatch_proto entrowatch_grpc entrowatch_ingest_wire entrowatch_report_adapter)

# console: the web console on the metrics listener.
entrowatch_layer(entrowatch_console USES entrowatch_common entrowatch_console_proto
  entrowatch_sink entrowatch_export entrowatch_ingest)

# daemon: wires everything together.
entrowatch_layer(entrowatch_daemon USES entrowatch_common entrowatch_compute entrowatch_config
  entrowatch_proto entrowatch_grpc entrowatch_aggregation entrowatch_health entrowatch_store
  entrowatch_sink entrowatch_export entrowatch_alertmanager entrowatch_ingest
  entrowatch_ingest_wire entrowatch_report_adapter entrowatch_console)

# The clients: the C++ streaming client and the CLI.
entrowatch_layer(entrowatch_client USES entrowatch_proto entrowatch_grpc)
entrowatch_layer(entrowatch_client_nccl USES entrowatch_client)
entrowatch_layer(entrowatch_cli_lib USES entrowatch_common entrowatch_compute entrowatch_config
  entrowatch_proto entrowatch_grpc entrowatch_client entrowatch_console entrowatch_report_adapter)

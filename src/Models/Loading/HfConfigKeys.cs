using System.Text.Json;

namespace Headlight.Models.Loading;

/// <summary>How a config.json key bears on the computation.</summary>
internal enum ConfigKeyUse
{
    /// <summary>Read and applied by the loader.</summary>
    Honoured,

    /// <summary>Known not to change a forward pass in float32 (bookkeeping, training, generation settings).</summary>
    Inert,

    /// <summary>Changes the computation unless its value is the one Headlight implements; other values are refused.</summary>
    Checked,
}

/// <summary>One row of the key table.</summary>
/// <param name="Key">The config.json key.</param>
/// <param name="Use">How it bears on the computation.</param>
/// <param name="Accepts">For <see cref="ConfigKeyUse.Checked"/>: whether a value is one Headlight implements (null and absent always are).</param>
/// <param name="Expected">For <see cref="ConfigKeyUse.Checked"/>: the accepted values, for the error.</param>
internal sealed record ConfigKeyRule(string Key, ConfigKeyUse Use, Func<JsonElement, bool>? Accepts = null, string? Expected = null);

/// <summary>
/// Every config.json key of a supported family is honoured, known to be inert, or checked. The rule:
/// a checked key whose value is not the implemented one is a <see cref="ModelFormatException"/> naming
/// the key and the value; a key in neither the family's rows nor the common rows is returned as ignored
/// (real configs carry many harmless extras, so unknown keys are reported, not refused). A family is a
/// set of rows: adding a family adds an entry to <see cref="Families"/>.
/// </summary>
internal static class HfConfigKeys
{
    // BERT's rows (shared by RoBERTa); declared before Families, which reads them.
    private static readonly ConfigKeyRule[] BertKeys =
    [
        .. Honoured("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "vocab_size"),
        .. Inert(
            "hidden_dropout_prob", "attention_probs_dropout_prob", "directionality", "output_past", "tie_word_embeddings",
            "pooler_fc_size", "pooler_num_attention_heads", "pooler_num_fc_layers", "pooler_size_per_head", "pooler_type"),
        new("position_embedding_type", ConfigKeyUse.Checked, e => e.ValueKind == JsonValueKind.String && e.GetString() == "absolute", "\"absolute\" (relative_key and relative_key_query attention are not implemented)"),
    ];

    // Llama's rows (Qwen2 starts from them); declared before Families, which reads them.
    private static readonly ConfigKeyRule[] LlamaKeys =
    [
        .. Honoured(
            "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size", "hidden_act",
            "max_position_embeddings", "rms_norm_eps", "vocab_size", "rope_theta", "rope_scaling", "tie_word_embeddings",
            "attention_bias", "mlp_bias", "head_dim"),

        // pretraining_tp > 1 splits the projections into slices whose sum is the same product.
        .. Inert("attention_dropout", "pretraining_tp"),
        new("layer_types", ConfigKeyUse.Checked, e => e.ValueKind == JsonValueKind.Array && e.EnumerateArray().All(t => t.ValueKind == JsonValueKind.String && t.GetString() == "full_attention"), "every layer \"full_attention\""),
    ];

    /// <summary>Rows every family shares: bookkeeping, generation and training settings that a forward pass does not read.</summary>
    public static readonly ConfigKeyRule[] Common =
    [
        .. Inert(
            "architectures", "model_type", "transformers_version", "_name_or_path", "_commit_hash", "torch_dtype", "dtype",
            "gradient_checkpointing", "use_cache", "output_attentions", "output_hidden_states", "return_dict", "torchscript",
            "pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id", "mask_token_id", "decoder_start_token_id",
            "initializer_range", "initializer_factor", "label2id", "problem_type", "finetuning_task", "task_specific_params",
            "prefix", "tokenizer_class", "chunk_size_feed_forward", "tie_encoder_decoder", "attn_implementation", "_attn_implementation",
            "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty",
            "temperature", "top_k", "top_p", "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
            "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences", "output_scores", "return_dict_in_generate",
            "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty",
            "suppress_tokens", "begin_suppress_tokens", "classifier_dropout"),
        new("is_encoder_decoder", ConfigKeyUse.Checked, IsFalse, "false"),
        new("is_decoder", ConfigKeyUse.Checked, IsFalse, "false (a BERT used as a causal decoder is not supported)"),
        new("add_cross_attention", ConfigKeyUse.Checked, IsFalse, "false"),
        new("pruned_heads", ConfigKeyUse.Checked, e => e.ValueKind == JsonValueKind.Object && !e.EnumerateObject().Any(), "{} (pruned heads change the layer shapes)"),
        new("quantization_config", ConfigKeyUse.Checked, _ => false, "no quantization"),
        new("id2label", ConfigKeyUse.Honoured),
        new("num_labels", ConfigKeyUse.Honoured),
    ];

    /// <summary>Each family's own rows, by <c>model_type</c>.</summary>
    public static readonly Dictionary<string, ConfigKeyRule[]> Families = new(StringComparer.Ordinal)
    {
        ["bert"] = BertKeys,
        // RoBERTa has BERT's keys (pad_token_id also places its positions).
        ["roberta"] = BertKeys,
        ["distilbert"] =
        [
            .. Honoured("dim", "n_layers", "n_heads", "hidden_dim", "activation", "max_position_embeddings", "vocab_size"),
            .. Inert("dropout", "attention_dropout", "qa_dropout", "seq_classif_dropout", "tie_weights_", "output_past"),
            new("sinusoidal_pos_embds", ConfigKeyUse.Checked, IsFalse, "false (learned position embeddings)"),
        ],
        ["gpt2"] =
        [
            .. Honoured("n_embd", "n_layer", "n_head", "n_inner", "activation_function", "n_positions", "layer_norm_epsilon", "vocab_size", "tie_word_embeddings"),
            .. Inert(
                "n_ctx", "resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_type", "summary_use_proj", "summary_activation",
                "summary_proj_to_labels", "summary_first_dropout", "n_special", "predict_special_tokens",

                // Upcasting changes only float16 rounding; Headlight computes in float32 throughout.
                "reorder_and_upcast_attn"),
            new("scale_attn_weights", ConfigKeyUse.Checked, IsTrue, "true (attention scores scaled by 1/sqrt(head_dim))"),
            new("scale_attn_by_inverse_layer_idx", ConfigKeyUse.Checked, IsFalse, "false"),
        ],
        ["gpt_neox"] =
        [
            .. Honoured(
                "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act", "max_position_embeddings",
                "layer_norm_eps", "vocab_size", "rotary_pct", "partial_rotary_factor", "rotary_emb_base", "rope_theta", "rope_scaling",
                "tie_word_embeddings", "attention_bias"),
            .. Inert("attention_dropout", "hidden_dropout"),
            new("use_parallel_residual", ConfigKeyUse.Checked, IsTrue, "true (the sequential residual of GPT-NeoX is not implemented)"),
        ],
        ["llama"] = LlamaKeys,
        ["qwen2"] =
        [
            .. LlamaKeys.Where(k => k.Key is not "attention_bias" and not "mlp_bias"),
            // Without use_sliding_window every layer attends to the whole causal prefix and these two are unused.
            .. Inert("sliding_window", "max_window_layers"),
            new("use_sliding_window", ConfigKeyUse.Checked, IsFalse, "false (sliding-window attention is not implemented)"),
        ],
    };

    /// <summary>Checks every key of <paramref name="root"/> against the family's rows and the common rows.</summary>
    /// <returns>The keys in neither (ignored), in file order; an empty list when there are none.</returns>
    /// <exception cref="ModelFormatException">A checked key holds a value Headlight does not implement.</exception>
    public static IReadOnlyList<string> Check(string path, string family, JsonElement root)
    {
        ArgumentNullException.ThrowIfNull(path);
        var rules = Families.TryGetValue(family, out var own) ? own : throw new ArgumentException($"No key table for family '{family}'.", nameof(family));
        List<string>? ignored = null;
        foreach (var property in root.EnumerateObject())
        {
            var rule = Array.Find(rules, r => r.Key == property.Name) ?? Array.Find(Common, r => r.Key == property.Name);
            if (rule is null)
            {
                (ignored ??= []).Add(property.Name);
                continue;
            }

            if (rule.Use == ConfigKeyUse.Checked && property.Value.ValueKind != JsonValueKind.Null && !rule.Accepts!(property.Value))
            {
                throw new ModelFormatException(path, property.Name, rule.Expected ?? "the implemented value", property.Value.GetRawText());
            }
        }

        return ignored is null ? Array.Empty<string>() : ignored.ToArray();
    }

    /// <summary>An optional boolean key (absent or null gives <paramref name="fallback"/>).</summary>
    /// <exception cref="ModelFormatException">The value is not a boolean.</exception>
    public static bool OptionalBool(string path, JsonElement root, string key, bool fallback)
    {
        if (!root.TryGetProperty(key, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return fallback;
        }

        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new ModelFormatException(path, key, "true or false", value.GetRawText()),
        };
    }

    private static bool IsFalse(JsonElement e) => e.ValueKind == JsonValueKind.False;

    private static bool IsTrue(JsonElement e) => e.ValueKind == JsonValueKind.True;

    private static IEnumerable<ConfigKeyRule> Inert(params string[] keys) => keys.Select(k => new ConfigKeyRule(k, ConfigKeyUse.Inert));

    private static IEnumerable<ConfigKeyRule> Honoured(params string[] keys) => keys.Select(k => new ConfigKeyRule(k, ConfigKeyUse.Honoured));
}

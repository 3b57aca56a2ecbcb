//! The console's words: Brazilian Portuguese first, English when the browser prefers it or the
//! user switches (a `lang` cookie).

/// A language of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Português (Brasil), the default.
    Pt,
    /// English.
    En,
}

impl Lang {
    /// The `lang` cookie's choice, else the first of `Accept-Language` we speak, else Portuguese.
    pub fn of(request: &poem::Request) -> Self {
        match crate::auth::cookie(request, "lang").as_deref() {
            Some("en") => return Self::En,
            Some("pt") => return Self::Pt,
            _ => {}
        }
        let accept = request
            .headers()
            .get(poem::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        for tag in accept.split(',') {
            let tag = tag
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_lowercase();
            if tag.starts_with("pt") {
                return Self::Pt;
            }
            if tag.starts_with("en") {
                return Self::En;
            }
        }
        Self::Pt
    }

    /// The HTML `lang` attribute.
    pub fn code(self) -> &'static str {
        match self {
            Self::Pt => "pt-BR",
            Self::En => "en",
        }
    }

    /// The other language (for the switch) and its name.
    pub fn other(self) -> (&'static str, &'static str) {
        match self {
            Self::Pt => ("en", "English"),
            Self::En => ("pt", "Português"),
        }
    }

    /// A word or sentence of the console.
    pub fn t(self, key: &str) -> &'static str {
        let (pt, en) = match key {
            "title" => ("Sentinela", "Sentinela"),
            "sign_in" => ("Entrar", "Sign in"),
            "skip" => ("Pular para o conteúdo", "Skip to the content"),
            "sign_out" => ("Sair", "Sign out"),
            "api_key" => ("Chave de API", "API key"),
            "sign_in_help" => (
                "Use a chave de API que a administração da sua cidade lhe entregou.",
                "Use the API key your city's administrators gave you.",
            ),
            "bad_key" => ("Chave de API inválida", "Invalid API key"),
            "searches" => ("Buscas", "Searches"),
            "new_search" => ("Nova busca", "New search"),
            "city" => ("Cidade", "City"),
            "plate" => ("Placa", "Plate"),
            "plate_help" => (
                "Placa brasileira (ABC1D23 ou ABC-1234); * e ? valem como curingas.",
                "Brazilian plate (ABC1D23 or ABC-1234); * and ? are wildcards.",
            ),
            "color" => ("Cor", "Colour"),
            "vehicle_type" => ("Tipo de veículo", "Vehicle type"),
            "any" => ("Qualquer", "Any"),
            "start" => ("Início", "Start"),
            "end" => ("Fim", "End"),
            "window_help" => (
                "Horário da cidade selecionada.",
                "In the selected city's time zone.",
            ),
            "cameras" => ("Câmeras", "Cameras"),
            "cameras_help" => (
                "Nenhuma selecionada: todas as câmeras da cidade.",
                "None selected: every camera of the city.",
            ),
            "search" => ("Buscar", "Search"),
            "status" => ("Situação", "Status"),
            "progress" => ("Progresso", "Progress"),
            "created" => ("Criada em", "Created"),
            "criteria" => ("Critérios", "Criteria"),
            "no_searches" => ("Nenhuma busca ainda.", "No searches yet."),
            "all" => ("Todas", "All"),
            "filter" => ("Filtrar", "Filter"),
            "trajectory" => ("Trajetória", "Trajectory"),
            "timeline" => ("Linha do tempo", "Timeline"),
            "map" => ("Mapa", "Map"),
            "map_help" => (
                "Câmeras pelas coordenadas e o caminho na ordem das visitas.",
                "Cameras by their coordinates and the path in visit order.",
            ),
            "export_csv" => ("Exportar CSV", "Export CSV"),
            "export_geojson" => ("Exportar GeoJSON", "Export GeoJSON"),
            "cancel" => ("Cancelar busca", "Cancel search"),
            "retry" => ("Repetir gravações com falha", "Retry failed recordings"),
            "not_seen" => ("O veículo não foi visto.", "The vehicle was not seen."),
            "sightings" => ("avistamentos", "sightings"),
            "sighting" => ("Avistamento", "Sighting"),
            "camera" => ("Câmera", "Camera"),
            "when" => ("Quando", "When"),
            "confidence" => ("Confiança", "Confidence"),
            "snapshot" => (
                "Imagem com a marcação do veículo",
                "Snapshot with the vehicle boxed",
            ),
            "clip" => ("Vídeo do momento", "Clip of the moment"),
            "back" => ("Voltar", "Back"),
            "not_found" => ("Não encontrado", "Not found"),
            "not_found_help" => (
                "Esta página não existe ou não é da sua cidade.",
                "This page does not exist or is not your city's.",
            ),
            "forbidden" => ("Proibido", "Forbidden"),
            "csrf" => (
                "O formulário expirou ou não veio desta página. Recarregue e tente de novo.",
                "The form expired or did not come from this page. Reload and try again.",
            ),
            "errors" => ("Corrija:", "Please correct:"),
            "loading" => ("Carregando…", "Loading…"),
            "pending" => ("na fila", "queued"),
            "processing" => ("em andamento", "processing"),
            "completed" => ("concluída", "completed"),
            "completed_with_errors" => ("concluída com falhas", "completed with errors"),
            "failed" => ("falhou", "failed"),
            "cancelled" => ("cancelada", "cancelled"),
            "budget_exhausted" => ("cota diária esgotada", "daily budget exhausted"),
            "cities" => ("Cidades", "Cities"),
            "search_n" => ("Busca", "Search"),
            "over_cap" => (
                " · acima do limite da cidade: reduza o período ou as câmeras",
                " · over the city's cap: narrow the window or the cameras",
            ),
            "frames" => ("quadros analisados", "frames analysed"),
            "calls" => ("chamadas ao detector", "detector calls"),
            "retention_days" => ("Retenção (dias)", "Retention (days)"),
            "storage_cap" => ("Limite de armazenamento (bytes)", "Storage cap (bytes)"),
            "searches_in_flight" => ("Buscas simultâneas", "Searches at once"),
            "daily_calls" => ("Chamadas ao detector por dia", "Detector calls per day"),
            "save" => ("Salvar", "Save"),
            "name" => ("Nome", "Name"),
            "coordinates" => ("Coordenadas", "Coordinates"),
            "folder" => ("Pasta (MediaMTX)", "Folder (MediaMTX)"),
            "enabled" => ("Ativa", "Enabled"),
            "enable" => ("Ativar", "Enable"),
            "disable" => ("Desativar", "Disable"),
            "recordings" => ("Gravações", "Recordings"),
            "recording" => ("Gravação", "Recording"),
            "add_camera" => ("Adicionar câmera", "Add camera"),
            "latitude" => ("Latitude", "Latitude"),
            "longitude" => ("Longitude", "Longitude"),
            "file" => ("Arquivo", "File"),
            "delete" => ("Excluir", "Delete"),
            "first_500" => (
                "Mostrando as primeiras 500; filtre por período.",
                "Showing the first 500; filter by window.",
            ),
            "not_deleted" => ("Não excluída", "Not deleted"),
            "held" => (
                "uma busca em andamento ou um avistamento guardado usa esta gravação.",
                "a running search or a stored sighting holds this recording.",
            ),
            "keys" => ("Chaves de API", "API keys"),
            "secret_once" => (
                "Copie agora: o segredo da nova chave não será mostrado de novo.",
                "Copy it now: the new key's secret will not be shown again.",
            ),
            "user" => ("Usuário", "User"),
            "last_used" => ("Último uso", "Last used"),
            "revoked" => ("revogada", "revoked"),
            "revoke" => ("Revogar", "Revoke"),
            "new_key" => ("Criar chave", "Create key"),
            "jobs" => ("Filas e tarefas", "Queues and tasks"),
            "queues" => ("Filas", "Queues"),
            "queue" => ("Fila", "Queue"),
            "per_city" => ("Tarefas por cidade", "Tasks per city"),
            "no_backlog" => ("Nenhuma tarefa pendente.", "No pending tasks."),
            "oldest" => ("Mais antiga na fila", "Oldest queued"),
            "running" => ("Em execução", "Running"),
            "failed_tasks" => ("Com falha", "Failed"),
            "error" => ("Erro", "Error"),
            _ => ("?", "?"),
        };
        match self {
            Self::Pt => pt,
            Self::En => en,
        }
    }
}

/// Colours the form offers: (value sent to the API, Portuguese, English).
pub const COLORS: [(&str, &str, &str); 10] = [
    ("vermelho", "vermelho", "red"),
    ("azul", "azul", "blue"),
    ("verde", "verde", "green"),
    ("amarelo", "amarelo", "yellow"),
    ("branco", "branco", "white"),
    ("preto", "preto", "black"),
    ("prata", "prata", "silver"),
    ("cinza", "cinza", "grey"),
    ("laranja", "laranja", "orange"),
    ("marrom", "marrom", "brown"),
];

/// Vehicle types the form offers: (value sent to the API, Portuguese, English).
pub const VEHICLE_TYPES: [(&str, &str, &str); 4] = [
    ("carro", "carro", "car"),
    ("ônibus", "ônibus", "bus"),
    ("caminhão", "caminhão", "truck"),
    ("moto", "moto", "motorcycle"),
];

/// A canonical colour or vehicle type (as the API stores it, in English) in `lang`.
pub fn word(lang: Lang, canonical: &str) -> String {
    let known = COLORS
        .iter()
        .chain(VEHICLE_TYPES.iter())
        .find(|(_, _, en)| *en == canonical || (canonical == "gray" && *en == "grey"));
    match (lang, known) {
        (Lang::Pt, Some((_, pt, _))) => (*pt).to_owned(),
        _ => canonical.to_owned(),
    }
}
